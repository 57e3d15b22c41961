"""The stress study's protocol (version 1), fixed before any method ran on a stress lab (studies.stress_study runs
it, then scores it). A changed rule is a new version with new confirmation labs.

Question: does the kit's default (AdaBN), as shipped, beat the cheapest label-free baselines, on routine labs and
on the labs where AdaBN is known to fail (the lab bank's stress labs); and does a guard help where it fails?

1. Budget: 64 px, 600 steps (6 x 100), from scratch, seeds 0, 1 and 2. Every method's weights are trained on the
   sources alone, so one run per seed and base recipe (BASES) serves every lab: the base runs train on the first
   selection lab's data root (the sources are the same bytes in every lab).
2. Each lab's run comes from the kit's command that only recomputes what depends on the target:
   `train.py --init BASE --epochs 0 --data-root LAB` (+ the method's settings), which equals a full run on the lab
   for these recipes (tests/test_retarget.py); a method whose prediction does not depend on the lab's WBC1
   (the target normalised with the sources' statistics, no AdaBN) predicts from its base run directly. WBC2 is
   predicted as `infer.py --tta` does (the stored statistics); the ensemble is the mean of the 3 seeds' logits
   (`ensemble.py`'s default). `--bn-min-images 64` changes nothing where WBC1 has 64 images or more: there the
   study takes the same run's prediction without it. Score: WBC2 macro F1 against the lab's labels (read by this study only).
3. Methods: baselines source-only, own-norm (`--recipe own-norm`), reinhard and macenko (source-only with
   `--stain-norm`); adaptive: kit (AdaBN), kit + balance (`--bn-balance`), kit + min 64 (`--bn-min-images 64`),
   kit + both. Hyperparameters fixed here, none tuned.
4. Labs: SELECTION_LABS (6 routine, 5 stress: one of each kind) fix the baseline and the default; CONFIRMATION_LABS
   (10 routine, 10 stress: two of each kind) play no part in any choice.
5. Rule 1, the baseline to beat: among the baselines, the highest mean WBC2 macro F1 over the selection labs
   (mean over seeds per lab, then over labs); ties within 0.005 to the earlier in BASELINES.
6. Rule 2, the default: gains are WBC2 macro F1 minus the baseline's, paired on lab and seed; a lab *loses* when
   its seed-mean gain is below -0.01. A candidate (the adaptive methods and the baseline itself, whose gain is 0)
   qualifies on the selection labs when its mean gain is at least +0.05, at most 1 lab loses, and its worst single
   run is at least -0.05. Among qualifying candidates, the highest mean gain (ties within 0.005 to the earlier in
   CANDIDATES); if none qualifies, the best worst lab (seed-mean gain), ties to the higher mean gain.
7. Confirmation: the chosen default against the chosen baseline on the confirmation labs, reported beside every
   other method: mean and median gain, labs losing, worst lab, worst single run, per kind of lab, bootstrap 90%
   intervals over labs (2000 resamples, seed 0), ensembles beside single runs. The kit ships the chosen default.
"""

SEEDS = (0, 1, 2)
BUDGET = {"image_size": 64, "epochs": 6, "iters_per_epoch": 100}
SELECTION_LABS = ("lab1", "lab2", "lab3", "lab4", "lab5", "lab6", "stress0", "stress1", "stress2", "stress3", "stress4")
CONFIRMATION_LABS = tuple(f"lab{i}" for i in range(111, 121)) + tuple(f"stress{i}" for i in range(5, 15))
# base runs: (recipe, settings); trained once per seed
BASES = {"source-only": ("source-only", {}), "kit": ("kit", {}),
         "reinhard": ("source-only", {"stain_norm": "reinhard"}), "macenko": ("source-only", {"stain_norm": "macenko"})}
# method: (base, settings of the re-targeting run, or None: predicted from the base run as it is)
METHODS = {
    "source-only": ("source-only", None),
    "own-norm": ("source-only", {"target_norm": "own"}),
    "reinhard": ("reinhard", None),
    "macenko": ("macenko", None),
    "kit": ("kit", {}),
    "kit + balance": ("kit", {"bn_balance": True}),
    "kit + min 64": ("kit", {"bn_min_images": 64}),
    "kit + both": ("kit", {"bn_balance": True, "bn_min_images": 64}),
}
BASELINES = ("source-only", "own-norm", "reinhard", "macenko")
CANDIDATES = ("kit", "kit + balance", "kit + min 64", "kit + both")
TIE = 0.005
LOSS = -0.01
QUALIFY = {"mean_gain": 0.05, "labs_losing": 1, "worst_run": -0.05}
