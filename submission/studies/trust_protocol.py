"""The trust study's protocol: its points, candidates, rule and warning levels, fixed before any estimate was
scored (submission.studies.trust_study runs it, submission.studies.trust_report scores it).

The rule (written before any estimate was scored):
1. Points: every run (METHODS x SEEDS, best.pt + TTA on WBC2, the way `infer.py` predicts: AdaBN
   statistics from WBC1) and every ensemble (a method's seeds on a lab, mean logits), on every lab.
   An estimate's error is estimated minus true WBC2 accuracy / macro F1.
2. Candidates: the estimators a single run can print (they need only its source validation):
   calibrated, atc-mc, atc-ne, doc; each with the source-validation cells predicted with the target's
   BatchNorm statistics ("same") or the training ones ("source"; differs only for AdaBN).
3. The choice: on the selection labs, the lowest mean absolute error of macro F1; a tie within 0.005
   goes to the earlier candidate (in the order above, "same" before "source").
4. Its error bar: the 90th percentile of its absolute error on the test labs (accuracy and macro F1
   apart), with the mean; it must beat both naive estimates there (source-validation scores, and the
   selection labs' mean true score); reported whether it does. The demo lab and lab B are reported beside.
5. Warnings (fixed with the rule): estimated macro F1 below 0.5, members' agreement below 0.8, a class
   with no predicted cell or an expected F1 below 0.2.
6. Do no harm by the estimate: keep a run's adapted (AdaBN) prediction only where its chosen estimate is
   at least the source-only run's; adopted for `ensemble.py --do-no-harm` only if on the selection labs it
   raises the mean true macro F1 over always adapting and does not lower the worst lab; reported on the
   test labs either way.
7. Checkpoint choice by the estimate (`choices`): the kit's recipe trained with every epoch kept (its weights
   do not depend on the lab: the target never enters a training step), each epoch and avg.pt given each
   lab's AdaBN statistics from WBC1; for last, source-val, avg, im and estimate, the gap of the pick's
   WBC2 macro F1 (no TTA) to the run's best epoch. The default is the one with the smallest mean gap on
   the selection labs, within one standard error the simplest (CHOICES' order); the test labs confirm.
"""

from pathlib import Path

from submission.studies import protocol as P

METHODS = ("source-only", "AdaBN", "strong aug", "strong aug + AdaBN")
SEEDS = (0, 1, 2)
LABS = P.SELECTION_LABS + P.TEST_LABS + P.NAMED_LABS
CANDIDATES = ("calibrated", "atc-mc", "atc-ne", "doc")
VARIANTS = ("same", "source")
TIE = 0.005
CHOICE_SEEDS = (0, 1)
CHOICE_NAMES = ("last", "source-val", "avg", "im", "estimate")


def pred_path(out: Path, method: str, lab: str, seed: int) -> Path:
    return Path(out) / "preds" / P.slug(method) / lab / f"seed{seed}.npz"
