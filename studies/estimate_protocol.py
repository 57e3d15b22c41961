"""The estimate study's protocol (version 1), fixed before its confirmation labs were drawn (studies.estimate_study
runs it). A changed rule is a new version with new confirmation labs.

Question: which label-free estimate of WBC2 macro F1 should the commands print for the kit's default (own-norm),
for one run and for an ensemble of 2 or 3 runs, and how far off is it on labs that played no part in the choice?

1. Points: the stress study's own-norm runs (64 px, 600 steps, seeds 0-2, re-targeted per lab, WBC2 with TTA):
   per lab, each seed's run (3 single-run points), each pair's ensemble (3 two-member points) and the 3-seed
   ensemble (1 point). Truth: WBC2 macro F1 over the classes present (the challenge's score).
2. Labs: DEVELOPMENT_LABS, the stress study's 31 labs (its selection and confirmation labs: every estimate below
   was allowed to look at them); CONFIRMATION_LABS, 10 routine and 10 stress labs drawn after this file was
   committed, which play no part in any choice or fit.
3. Features of a point (submission.scoring.trust, macro F1 over every class): atc (ATC, max probability, calibrated
   on the base run's source validation; an ensemble: on the members' mean source-validation logits), calibrated
   (temperature-scaled confidence), doc, agreement (an ensemble's members with the ensemble, version 2), loo (each
   member against the mean of the others), classes (the share of the 11 classes predicted for at least one cell).
4. Candidates per use (one run; an ensemble of 2; of 3), in this order (simpler first):
   - "<feature> corrected": the feature less its mean signed error on the development labs (atc, calibrated for one
     run; loo, agreement, atc for an ensemble);
   - "mean corrected": the mean of atc and calibrated (one run) or of loo and atc (an ensemble), less its bias;
   - "linear": least squares of the truth on the use's features (one run: atc, calibrated, doc, classes; an
     ensemble: loo, agreement, atc, calibrated, classes) with an intercept, ridge penalty RIDGE on the
     standardised features, predictions clipped to [0, 1].
5. Rule: each candidate's errors on the development labs by leave-one-lab-out (its correction or fit from the
   other 30 labs); the candidate with the lowest 90th-percentile absolute error; ties within TIE to the earlier.
   The chosen candidate is then fitted on all development labs and shipped (submission/measured/trust.json,
   version 4) with its errors on the confirmation labs as the printed bar, beside the constant guess (the
   development labs' mean truth), and printed only where both its mean and 90th-percentile errors beat the guess's.
6. Targets (reported, not used to choose): an ensemble's bias within +-0.03 and 90th-percentile error at most 0.15
   on the confirmation labs; lab-level bootstrap 90% intervals of the 90th percentile (1000 resamples, seed 0).
"""

from studies import stress_protocol as S

VERSION = 1
METHOD = "own-norm"
SEEDS = S.SEEDS
DEVELOPMENT_LABS = S.SELECTION_LABS + S.CONFIRMATION_LABS
CONFIRMATION_LABS = tuple(f"lab{i}" for i in range(121, 131)) + tuple(f"stress{i}" for i in range(15, 25))
GROUPS = {1: [[0], [1], [2]], 2: [[0, 1], [0, 2], [1, 2]], 3: [[0, 1, 2]]}
FEATURES = {1: ("atc", "calibrated", "doc", "classes"), 2: ("loo", "agreement", "atc", "calibrated", "classes")}
CORRECTED = {1: ("atc", "calibrated"), 2: ("loo", "agreement", "atc")}
MEANS = {1: ("atc", "calibrated"), 2: ("loo", "atc")}
RIDGE = 1.0
TIE = 0.01


def use(members: int) -> int:
    """The feature set of a use: 1 for one run, 2 for any ensemble."""
    return 1 if members == 1 else 2


def candidates(members: int) -> list[str]:
    u = use(members)
    return [f"{f} corrected" for f in CORRECTED[u]] + ["mean corrected", "linear"]
