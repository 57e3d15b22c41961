"""What a training-time adaptation term is: its loss, its settings and what it needs from a step.

A term lives in one file of methods/ (mdd.py, mcc.py, ...) and is listed once in methods/registry.py.
Its settings become TrainConfig fields and train.py options (config.py reads them from the registry);
the training step adds `weight x loss` for every term whose weight is not 0 and returns the term's
value under `column`, which the loop sums, checks, logs to metrics.csv and shows, naming no method.
No torch here: the config reads this file, and a term's file imports torch only where it computes.
"""

from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any


@dataclass(frozen=True)
class Setting:
    """One option of a term: a TrainConfig field (`name`), its default and its help text."""
    name: str
    default: Any
    help: str


@dataclass(frozen=True)
class StepOutputs:
    """What one training step gives every term: logits (B, K) of the main head (`y_s`, `y_t`) and of
    the adversarial head behind the gradient reversal (`y_s_adv`, `y_t_adv`), the source labels (B,),
    the reversal coefficient, the step and the run's total steps. The target's are None without a
    target batch (only terms with needs_target=False run then)."""
    y_s: Any
    labels_s: Any
    y_t: Any = None
    y_s_adv: Any = None
    y_t_adv: Any = None
    coeff: float = 0.0
    step: int = 0
    total_steps: int = 1


@dataclass(frozen=True)
class Term:
    """A loss added to the classification loss.

    settings[0] is the term's weight (0: off; the term is active when it is not 0); `loss(out, s)`
    takes the step's outputs and a namespace of the term's own settings and returns a scalar tensor.
    `needs_target`: it reads the target batch (the run must forward one: --target-in-batch).
    `trains_adversary`: the adversarial head learns from it (and the reversal coefficient is shown).
    """
    name: str
    column: str  # metrics.csv column and progress-line key, e.g. "mcc_loss"
    settings: tuple[Setting, ...]
    loss: Callable[[StepOutputs, SimpleNamespace], Any]
    needs_target: bool = True
    trains_adversary: bool = False
    label: str = ""  # how plots and the progress line name it (default: the name)

    @property
    def weight(self) -> str:
        return self.settings[0].name

    @property
    def short(self) -> str:
        return self.label or self.name

    def own(self, cfg) -> SimpleNamespace:
        """The term's settings as the config holds them."""
        return SimpleNamespace(**{s.name: getattr(cfg, s.name) for s in self.settings})

    def active(self, cfg) -> bool:
        return bool(getattr(cfg, self.weight))
