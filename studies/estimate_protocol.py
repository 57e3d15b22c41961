"""The estimate study's protocol (version 2), fixed before its confirmation labs were drawn (studies.estimate_study
runs it). A changed rule is a new version with new confirmation labs.

Version 1 (commit f3461f4; its tables in docs/results/estimate/v1/) chose the linear estimate for every use; on its
20 confirmation labs the ensemble's error was +0.029 bias / 0.266 90th percentile (2 runs) and +0.054 / 0.237
(3 runs), short of the targets. Its misses were predictions in which two or more classes have no cell at all:
without labels a lab that lacks those cells (a single patient, a leukaemia clinic) and a model that lost them
look alike, and an estimate over every class (or over the classes predicted) is wrong in one of the two cases.
Version 2 adds a gate, fixed after looking at version 1's 51 labs, which therefore become its development labs:
on them, by leave-one-lab-out, the points within the gate erred 0.12-0.13 (90th percentile of the best candidate
per use), the points beyond it 0.28-0.40; the gate held 70% of the points.

Question: which label-free estimate of WBC2 macro F1 should the commands print for the kit's default (own-norm),
for one run and for an ensemble of 2 or 3 runs, when should they print none, and how far off is it on labs that
played no part in any choice?

1. Points: the stress study's own-norm runs (64 px, 600 steps, seeds 0-2, re-targeted per lab, WBC2 with TTA):
   per lab, each seed's run (3 single-run points), each pair's ensemble (3 two-member points) and the 3-seed
   ensemble (1 point). Truth: WBC2 macro F1 over the classes present (the challenge's score).
2. Labs: DEVELOPMENT_LABS, version 1's 51 labs (its development and confirmation labs: every choice below was
   allowed to look at them); CONFIRMATION_LABS, 10 routine and 10 stress labs (two of each stress kind) drawn after
   this file was committed, which play no part in any choice or fit.
3. Features of a point: as version 1 (atc, calibrated, doc, agreement, loo, classes; macro F1 over every class).
4. Gate: a point is estimable when at most MAX_VANISHED of the 11 classes have no predicted cell. The commands
   print no estimate beyond the gate (they say why and point to the labels check); candidates are fitted, chosen
   and scored on estimable points only.
5. Candidates per use: as version 1 ("<feature> corrected", "mean corrected", "linear"), in that order.
6. Rule: as version 1, on the estimable development points: each candidate's errors by leave-one-lab-out; the
   lowest 90th-percentile absolute error, ties within TIE to the earlier. The chosen candidate is fitted on all
   estimable development points and shipped (submission/measured/trust.json, version 5) with its errors on the
   estimable confirmation points as the printed bar, beside the constant guess (the estimable development
   points' mean truth), and printed only where both its mean and 90th-percentile errors beat the guess's.
7. Reported beside it (not used to choose): the share of confirmation points within the gate; the errors the
   chosen estimate would have had beyond it; how often the gate and "estimated macro F1 is low" fire on bad
   points (true macro F1 below 0.5) and on good ones.
8. Targets (reported, not used to choose): on the estimable confirmation points an ensemble's bias within +-0.03
   and 90th-percentile error at most 0.15, and the single run's measured likewise; lab-level bootstrap 90%
   intervals of the 90th percentile (1000 resamples, seed 0).
"""

from studies import stress_protocol as S

VERSION = 2
METHOD = "own-norm"
SEEDS = S.SEEDS
V1_CONFIRMATION_LABS = tuple(f"lab{i}" for i in range(121, 131)) + tuple(f"stress{i}" for i in range(15, 25))
DEVELOPMENT_LABS = S.SELECTION_LABS + S.CONFIRMATION_LABS + V1_CONFIRMATION_LABS
CONFIRMATION_LABS = tuple(f"lab{i}" for i in range(131, 141)) + tuple(f"stress{i}" for i in range(25, 35))
GROUPS = {1: [[0], [1], [2]], 2: [[0, 1], [0, 2], [1, 2]], 3: [[0, 1, 2]]}
FEATURES = {1: ("atc", "calibrated", "doc", "classes"), 2: ("loo", "agreement", "atc", "calibrated", "classes")}
CORRECTED = {1: ("atc", "calibrated"), 2: ("loo", "agreement", "atc")}
MEANS = {1: ("atc", "calibrated"), 2: ("loo", "atc")}
RIDGE = 1.0
TIE = 0.01
MAX_VANISHED = 1


def use(members: int) -> int:
    """The feature set of a use: 1 for one run, 2 for any ensemble."""
    return 1 if members == 1 else 2


def candidates(members: int) -> list[str]:
    u = use(members)
    return [f"{f} corrected" for f in CORRECTED[u]] + ["mean corrected", "linear"]
