"""The labels study's protocol, fixed before any run (studies.labels_study runs it, then scores it).

Question: what a lab's few labels buy, asked and used the way the kit ships it (ensemble.py --report --ask,
ensemble.py --labels [--choose], train.py --labels --init).

1. Budget: 64 px, 600 steps (6 x 100), the kit's recipe (trained on the sources alone; the target never
   enters a training step, so one run per seed serves every lab; AdaBN statistics from each lab's WBC1).
   Seeds 0 and 1. Each prediction is the run's best.pt with TTA on WBC1 (labelled split) and WBC2 (score).
2. Labs: SELECTION_LABS fix the teaching settings and the default of --ask-by; TEST_LABS played no part in
   any choice (4 of them skewed: one class over 60% of the cells or absent classes). Labels are drawn from
   each lab's WBC1 by a simulated labeller that answers only the asked cells.
3. Budgets: 1, 3, 5 and 10 labelled cells per class (11, 33, 55, 110), asked by the kit's strategy
   ("uncertain") and at random ("random"), asking seeds 0 and 1, for check and choose (no training).
4. Check: the 90% interval of macro F1 over all of WBC1 (labelled cells alone, and prediction-powered);
   coverage = share of (lab, seed, asking seed) points whose interval holds the true WBC1 macro F1; width.
5. Choose: candidates kit and source-only (the same weights without AdaBN, the target normalised with the
   sources' statistics); rule: scoring/check.choose (keep kit unless source-only wins on the labelled cells
   by more than the 90% interval of the difference). Regret on WBC2 against the better of the two.
   (mcc and --target-norm own need a run per lab: not in this version.)
6. Teach: train.py --labels --init RUN at 5 per class, asked by the kit's strategy; gain = WBC2 macro F1 of
   the taught run minus the kit's run without labels, same seed. Settings fixed on the selection labs
   (seed 0): TEACH_CANDIDATES, the highest mean gain, ties within 0.01 to the earlier; then the test labs,
   seeds 0 and 1 (two processes, one per seed). As compute allows, after them: 5 per class at random, then
   10 per class asked (seed 0). (Revised before any teaching run: the two seeds run side by side.)
7. --ask-by's default: the strategy with the higher mean teaching gain on the selection labs if both were
   taught there, else the narrower median check interval at 5 per class on the selection labs; ties to
   "uncertain".
"""

SELECTION_LABS = ("lab1", "lab2", "lab3", "lab4")
TEST_LABS = ("lab101", "lab102", "lab103", "lab104", "lab105", "lab106", "lab107", "skew1", "skew2", "skew3", "skew4")
SEEDS = (0, 1)
ASK_SEEDS = (0, 1)
PER_CLASS = (1, 3, 5, 10)
STRATEGIES = ("uncertain", "random")
BUDGET = {"image_size": 64, "epochs": 6, "iters_per_epoch": 100}
TEACH_CANDIDATES = {"lr 0.004 (the run's)": {}, "lr 0.001": {"lr": 0.001}}
TIE = 0.01
