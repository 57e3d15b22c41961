"""The adapt study's protocol (the labels study's version 2), fixed before any of its runs (studies.adapt_study runs
it, then scores it). A changed rule is a new version with new labs.

Question: on a lab that gives the kit its 55 asked labels, how much does choosing the test-time treatment by those
labels (ensemble.py --labels over infer.py --adapt all), then teaching under it (train.py --labels --init RUN),
gain over the kit's label-free default (own normalisation), and how far is the choice from the best treatment in
hindsight?

1. Runs: the kit's recipe at 64 px, 600 steps (6 x 100), seeds 0, 1 and 2, no ImageNet weights. The sources alone
   train it, so one run per seed serves every lab: it is re-targeted to each lab as shipped (train.py --init RUN
   --epochs 0 --data-root LAB: the lab's WBC1 is its target, own normalisation fitted on it).
2. Predictions as shipped: infer.py --adapt all on the lab's WBC1 (the labelled split) and WBC2 (the score), best.pt,
   TTA (predict_treatments: the run's own treatment stored from WBC1, every other fitted on the images predicted).
3. Labels: the kit's default asking (ensemble.py --report --ask 55 --ask-by random, ask seed 0) on the seed's own
   WBC1 prediction, answered by the simulated labeller (only the asked cells). One run per choice (no ensemble).
4. Choice: the shipped rule (submission.predict.labelled.choose_treatment): keep own unless another candidate's
   labelled macro F1 beats it by more than the 90% interval of the difference (paired bootstrap); of several such,
   the highest; under 3 labels per labelled class, own. best.pt only (no avg or last candidates in this version).
5. Candidates: CANDIDATE_SETS, fixed on the SELECTION_LABS (rule 8) and then used on the TEST_LABS.
6. Teaching as shipped (train.py --labels labels.csv --init RETARGETED_RUN --adapt NAME: 3 x 100 steps at the run's
   lr, a third of the labels held out, i.e. 35-37 taught): "chosen + taught" under the chosen treatment, "taught
   from the default" under own (the same run where own was chosen). Ceiling: teaching under own with every WBC1
   label (--labels-holdout 0), seed 0 only (compute).
7. Scores: WBC2 macro F1 over the classes present (the challenge's score), per lab and seed: every treatment, the
   best in hindsight, the chosen, chosen + taught, taught from the default, the ceiling. Regret = best treatment
   in hindsight minus chosen. Gain = chosen + taught minus own (label-free default), per seed and as the lab's mean.
8. Rule for CANDIDATE_SETS, on the selection labs (all seeds): the set with the higher mean WBC2 macro F1 of the
   chosen treatment; ties within TIE go to "all" (what infer.py --adapt all predicts).
9. Labs: SELECTION_LABS and TEST_LABS, drawn for this study (none used by an earlier one); a third or more of the
   test labs are stress labs, one of every kind (label, small, prior, patient, morphology: stress<seed> is kind
   seed % 5). The targets (issue "Every adaptation from one run, chosen by the lab's labels"): on the test labs,
   mean regret at most 0.02; chosen + taught at least +0.20 over own on average, no lab's seed mean below own by
   more than 0.01.

Revised before any test-lab run (version 2.1; the labs, the rules and the targets unchanged), for compute: on one
core a lab point took 4-5 minutes to predict with TTA and a teaching run about 6 minutes, so the protocol as written
needed about 4 hours of both cores. (a) Predictions are made with one view (no TTA) in both stages: every treatment
under the same view, so the comparison between them stands; the selection labs' first points (with TTA, 4 of 12,
before the candidate set was fixed) were discarded and predicted again. (b) Teaching (protocol 6) on seed TEACH_SEEDS
only; every treatment's score, the choice and its regret on all 3 seeds. (c) The ceiling last, as compute allows.
"""

SELECTION_LABS = ("lab151", "lab152", "stress40", "stress43")
TEST_LABS = ("lab141", "lab142", "lab143", "lab144", "lab145", "lab146", "lab147",
             "stress35", "stress36", "stress37", "stress38", "stress39")
SEEDS = (0, 1, 2)
TEACH_SEEDS = (0,)  # revision (b)
TTA = False  # revision (a)
BUDGET = {"image_size": 64, "epochs": 6, "iters_per_epoch": 100}
ASK = {"n": 55, "by": "random", "seed": 0}
DEFAULT = "own"
CANDIDATE_SETS = {"all": ("own", "source", "adabn", "adabn-balanced", "adabn-early", "prior", "mix"),
                  "basic": ("own", "source", "adabn")}
TIE = 0.01
