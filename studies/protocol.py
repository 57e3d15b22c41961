"""The lab-bank protocol: which labs choose, which labs test, the budget, the methods, and the rule
that picks the kit's recipe. Fixed in code before any method ran on the bank; the choice it makes is
frozen (`frozen_choice.json`, with a hash of its settings) before the test labs are scored.

The rule (written before the first run on the bank):
1. Screening: every method on the selection labs, one seed, at BUDGET. Per lab, a method's gain is its
   WBC2 macro F1 minus source-only's (each run's own best.pt + TTA, the way a user predicts), paired on
   lab and seed. A lab *loses* when the gain is below -LOSS.
2. The choice: among the methods that adapt (use target images), the best mean gain among those whose
   worst selection lab loses at most LOSS (each also with the do-no-harm check, if on the selection labs the
   check fires in at most 1 in 5 of the runs where adaptation helped); if
   none qualifies, the method with the best worst selection lab; a tie within 0.005 goes to the simpler
   (earlier in METHODS). The runner-up by the same rule is confirmed beside it.
3. Frozen: the chosen method's settings and their SHA-256 are written to frozen_choice.json and
   committed before a test lab is scored.
4. Confirmation: the choice, the runner-up, strong augmentation and source-only on the test labs with
   CONFIRM_SEEDS; per lab the gain over source-only and over strong augmentation (seed means, paired);
   mean, median, worst lab and the number of labs losing more than LOSS. The demo lab and lab B are
   reported beside them and play no part in the choice.
"""

import hashlib
import json
from pathlib import Path

SELECTION_LABS = tuple(f"lab{i}" for i in range(1, 7))
TEST_LABS = tuple(f"lab{i}" for i in range(101, 111))
NAMED_LABS = ("demo", "lab_b")  # reported, never used to choose
SCREEN_SEEDS = (0,)
CONFIRM_SEEDS = (0, 1)
LOSS = 0.01  # a lab whose gain is below -LOSS loses
TIE = 0.005
# Over the --demo preset: 32 px and 200 steps, so that the study fits 2 CPU cores (the demo runs 64 px, 400 steps).
BUDGET = {"image_size": 32, "epochs": 5, "iters_per_epoch": 40}

OWN = {"target_in_batch": True, "target_norm": "own"}
# name -> (recipe, settings over it). Hyperparameters from the literature, fixed before the study: MCC weight 1,
# T 2.5 (Jin et al. 2020); MDD trade-off 1, margin 4 (Zhang et al. 2019); IM with equal entropy and diversity
# weights (SHOT, Liang et al. 2020); strong augmentation as the domain-generalisation baseline (Gulrajani &
# Lopez-Paz 2021). The rare-class-protecting MCC variant: MCC with SHOT's diversity term as a balance term.
METHODS = {
    "source-only": ("source-only", {}),
    "strong aug": ("source-only", {"strong_aug": True}),
    "AdaBN": ("source-only", {"adabn": True}),
    "strong aug + AdaBN": ("source-only", {"strong_aug": True, "adabn": True}),
    "colour aug": ("source-only", {"colour_aug": 0.5}),
    "MCC (kit)": ("mcc", {}),  # the kit's recipe when the study ran, now the `mcc` recipe (same settings)
    "MCC + diversity": ("mcc", {"div_weight": 1.0}),
    "IM": ("mcc", {"mcc_weight": 0.0, "im_weight": 1.0}),
    "MDD": ("mcc", {"mcc_weight": 0.0, "trade_off": 1.0}),
}
# Cut for the 2-core budget before any adaptive run (each per-lab run takes about 90 s here): MCC at weight 0.3,
# and strong augmentation + MCC + diversity. Both stay settings of the loop (--mcc-weight, --strong-aug).
BASELINE, STRONG = "source-only", "strong aug"


def trains_on_target(method: str) -> bool:
    """Whether a method's training uses the target's pixels (else one run per seed serves every lab:
    its weights do not depend on the lab; AdaBN only re-estimates BatchNorm on each lab's images)."""
    recipe, settings = METHODS[method]
    from submission.config import make_config

    cfg = make_config(recipe, demo=True, **settings)
    return cfg.target_in_batch or cfg.colour_aug > 0 or cfg.target_norm == "own"


def adapts(method: str) -> bool:
    """Whether a method uses the target's images at all (training, normalisation or BatchNorm)."""
    return trains_on_target(method) or METHODS[method][1].get("adabn", False)


def settings_hash(recipe: str, settings: dict) -> str:
    """SHA-256 of a recipe and its settings in canonical JSON: what frozen_choice.json pins."""
    text = json.dumps({"recipe": recipe, "settings": settings, "budget": BUDGET}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def provenance(command: str, study: str) -> dict:
    """Where a committed record came from: the study command and the commit it ran at."""
    from submission.demo.record import commit

    return {"command": command, "commit": commit() or "unknown (not a git checkout)", "study": study}


CHECKED = " + check"  # a method with the do-no-harm check: where it fires, the source-only prediction


def base(name: str) -> str:
    """The protocol method behind a name (without its do-no-harm suffix)."""
    return name.removesuffix(CHECKED)


def choose(gains: dict) -> list[str]:
    """The adaptive methods ranked by the rule: gains = {method (or method + check): [paired gain per
    selection lab]}. Simpler first on ties: METHODS' order, each method before its checked variant."""
    order = [n for m in METHODS for n in (m, m + CHECKED)]
    candidates = [m for m in order if m in gains and adapts(base(m)) and len(gains[m])]
    mean = {m: sum(gains[m]) / len(gains[m]) for m in candidates}
    worst = {m: min(gains[m]) for m in candidates}
    safe = [m for m in candidates if worst[m] >= -LOSS]
    ranked = []
    for pool, key in ((safe, mean), ([m for m in candidates if m not in safe], worst)):
        pool = list(pool)
        while pool:
            best = max(key[m] for m in pool)
            pick = next(m for m in pool if key[m] >= best - TIE)  # the simplest within the tie
            ranked.append(pick)
            pool.remove(pick)
    return ranked


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


def pred_file(out: Path, method: str, lab: str, seed: int) -> Path:
    """Where the study keeps a method's WBC1 and WBC2 logits on a lab (best.pt + TTA)."""
    return Path(out) / "preds" / slug(method) / lab / f"seed{seed}.npz"
