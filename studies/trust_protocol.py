"""The trust study's protocol: its points, candidates, rule and warning levels, fixed before any estimate was
scored (studies.trust_study runs it, studies.trust_report scores it).

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

Version 2 (written after v1 was scored on the selection and test labs, before any confirmation lab existed).
v1's choice (atc-mc/source) beat source-validation F1 but not the bank's mean F1; the members' agreement,
no v1 candidate because one run alone cannot compute it, beat both; and the confident collapses (true
macro F1 near 0.1, estimated near 0.9) come from averaging F1 over the predicted classes only.
8. Development labs: the selection labs and v1's test labs (16 labs, both seen). Confirmation labs:
   CONFIRM_LABS (lab201-210), drawn from the same ranges after this rule was committed, scored once.
9. Candidates, each with its macro F1 over the classes present or over all classes ("present" before
   "all"): for one run ("single"), atc-mc/source, atc-ne/source, calibrated/source; for a prediction with
   other runs beside it ("members"), those and agreement, agreement+atc (the mean of agreement and
   atc-mc/source). Per use, the lowest mean absolute macro-F1 error on the development labs' points; ties
   within TIE to the earlier.
10. Error bars: the 90th-percentile absolute error on the confirmation labs, per use; each must beat
   source-validation F1 and the development labs' mean true F1 there, reported either way.
11. The checkpoint choice (rule 7) and do no harm (rule 6) use the single-run estimator.
"""

from pathlib import Path

from studies import protocol as P

METHODS = ("source-only", "AdaBN", "strong aug", "strong aug + AdaBN")
SEEDS = (0, 1, 2)
LABS = P.SELECTION_LABS + P.TEST_LABS + P.NAMED_LABS  # v1; v2 adds CONFIRM_LABS
CANDIDATES = ("calibrated", "atc-mc", "atc-ne", "doc")
VARIANTS = ("same", "source")
TIE = 0.005
CONFIRM_LABS = tuple(f"lab{i}" for i in range(201, 211))
DEVELOPMENT_LABS = P.SELECTION_LABS + P.TEST_LABS
SINGLE = ("atc-mc/source", "atc-ne/source", "calibrated/source")
MEMBERS = SINGLE + ("agreement", "agreement+atc")
MACRO = ("present", "all")
CHOICE_SEEDS = (0, 1)
CHOICE_NAMES = ("last", "source-val", "avg", "im", "estimate")


def pred_path(out: Path, method: str, lab: str, seed: int) -> Path:
    return Path(out) / "preds" / P.slug(method) / lab / f"seed{seed}.npz"
