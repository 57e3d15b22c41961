"""What a test-time treatment is: what it fits on the target images and how the fitted state changes a prediction.

Two kinds, each one file of methods/adapt/ listed once in methods/adapt/__init__.py:

- a forward treatment (own, source, adabn, ...) fits a *state* on the target images: the input normalisation of the
  target (`norm`: per-channel mean and std) and, optionally, BatchNorm buffers (`bn`) that replace the model's own
  during the prediction. The code that predicts (train/evaluate.py, predict/inference.py) applies any such state the
  same way and never names a treatment; a checkpoint stores the states under the treatment's name.
- an output treatment (prior, mix) needs no forward pass of its own: it reads the logits of the treatments it `uses`
  and returns new logits (and what it estimated on them, e.g. a class prior, kept in the logits file's JSON).

No torch here: the config reads this file; a treatment's file imports torch only where it computes.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from submission.methods.term import Setting


@dataclass
class TargetImages:
    """What a forward treatment may fit on: the target's images, as the caller (training or prediction) holds them.

    `loader(norm)`: batches (x, y) of every target image, eval-transformed with normalisation `norm` (no
    augmentation, target order); `loader_of(dataset)`: the same for any dataset of the target's images, e.g. a
    resample; `dataset(norm)`: the dataset behind `loader(norm)`. `own_norm()`: the images' own per-channel mean and
    std; `run_norm`: the run's normalisation of its target (--target-norm); `source_norm`: the sources' pooled one.
    """
    model: Any
    device: Any
    channels_last: bool
    loader: Callable[[dict], Any]
    dataset: Callable[[dict], Any]
    loader_of: Callable[[Any], Any]
    own_norm: Callable[[], dict]
    run_norm: dict
    source_norm: dict
    train_prior: Any
    seed: int = 0
    settings: SimpleNamespace = field(default_factory=SimpleNamespace)


@dataclass(frozen=True)
class Treatment:
    """A test-time treatment.

    Forward (`uses` empty): `fit(target: TargetImages, settings: its own) -> {"norm": {"mean", "std"}, "bn": buffers or None,
    "note": str or None}`. Output (`uses` names other treatments): `combine(logits: {name: (N, K)}, train_prior) ->
    ((N, K) logits, {what it estimated})`, applied alike to the target's and the source-validation logits.
    `target_norm`: the input normalisation the treatment gives the target ("own", "source", or None for the run's),
    which teaching under it (train.py --labels --init RUN --adapt NAME) uses for the lab's cells.
    `needs_batchnorm`: it changes BatchNorm statistics (an error for a model without learned BatchNorm).
    `settings`: its options (TrainConfig fields and train.py options, as a training term's).
    """
    name: str
    summary: str  # one line: what it does, for --help, the terminal and the report
    fits: str  # what it fits on the target: "nothing", "channel statistics", ...
    stores: str  # what a checkpoint or a logits file keeps of it
    fit: Callable | None = None
    combine: Callable | None = None
    uses: tuple[str, ...] = ()
    target_norm: str | None = None
    needs_batchnorm: bool = False
    settings: tuple[Setting, ...] = ()

    @property
    def forward(self) -> bool:
        """Whether it needs a forward pass of its own (else it reuses the logits of those it uses)."""
        return not self.uses

    def own(self, settings) -> SimpleNamespace:
        """Its settings as a config (or a checkpoint's config dict) holds them."""
        get = settings.get if isinstance(settings, dict) else lambda k, d: getattr(settings, k, d)
        return SimpleNamespace(**{s.name: get(s.name, s.default) for s in self.settings})
