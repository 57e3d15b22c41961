"""Which cells to ask a hematologist to label: stratified over the predicted classes, each cell's chance
of being asked recorded so that the check can weight it (submission/scoring/check.py).

--ask-by random (the default, chosen by the labels study's rule: narrower check intervals): in each predicted
class, cells drawn uniformly at random.
--ask-by uncertain: in each predicted class, half the cells are chosen (certain to be asked): uncertain
ones (small margin between the top two classes, members that disagree) that differ from each other
(greedy farthest-point on the members' probabilities, the score weighted by uncertainty); the other
half drawn uniformly from the rest. Cells whose members' probabilities all agree within 1e-4 (the
same image twice) are never both asked. NumPy only.
"""

import numpy as np
import pandas as pd

from submission.scoring.validators import softmax

ASK_BY = ("random", "uncertain")
DUPLICATE = 1e-4


def quotas(strata: np.ndarray, k: int, n_ask: int) -> np.ndarray:
    """Cells to ask per predicted class: equal shares, capped by the class's cells, the rest to the largest."""
    sizes = np.bincount(strata, minlength=k)
    present = np.flatnonzero(sizes)
    q = np.zeros(k, int)
    if not len(present):
        return q
    q[present] = np.minimum(sizes[present], n_ask // len(present))
    for c in present[np.argsort(-sizes[present], kind="stable")][: n_ask % len(present)]:
        q[c] = min(sizes[c], q[c] + 1)
    while q.sum() < min(n_ask, sizes.sum()):  # short classes' shares go to those with cells left
        spare = np.flatnonzero(sizes - q)
        q[spare[np.argmax((sizes - q)[spare])]] += 1
    return q


def uncertainty(mean_probs: np.ndarray, member_probs: np.ndarray) -> np.ndarray:
    """1 - (top-1 - top-2 probability of the mean) + the share of members whose class differs from the mean's."""
    top = np.sort(mean_probs, 1)
    disagree = (member_probs.argmax(2) != mean_probs.argmax(1)[None]).mean(0)
    return 1 - (top[:, -1] - top[:, -2]) + disagree


def _diverse(cells: np.ndarray, u: np.ndarray, emb: np.ndarray, n: int) -> list[int]:
    """n cells of `cells`: the most uncertain first, then greedily the largest uncertainty x distance to those taken."""
    pool = cells[np.argsort(-u[cells], kind="stable")][: max(4 * n, 12)]
    taken = [int(pool[0])]
    dist = np.linalg.norm(emb[pool] - emb[pool[0]], axis=1)
    while len(taken) < n:
        score = np.where(dist > DUPLICATE, u[pool] * dist, -np.inf)
        if not np.isfinite(score.max()):
            break
        j = int(np.argmax(score))
        taken.append(int(pool[j]))
        dist = np.minimum(dist, np.linalg.norm(emb[pool] - emb[pool[j]], axis=1))
    return taken


def ask(mean_logits: np.ndarray, member_logits: list, n_ask: int, by: str = "random", seed: int = 0) -> pd.DataFrame:
    """Rows (cell index, stratum class index, half, p_pick, order) of the cells to ask, in asking order."""
    mean_probs = softmax(np.asarray(mean_logits, float))
    members = np.stack([softmax(np.asarray(m, float)) for m in member_logits]) if member_logits else mean_probs[None]
    n, k = mean_probs.shape
    strata = mean_probs.argmax(1)
    u = uncertainty(mean_probs, members)
    emb = members.transpose(1, 0, 2).reshape(n, -1)
    rng = np.random.default_rng(seed)
    rows = []
    for c, q in enumerate(quotas(strata, k, n_ask)):
        cells = np.flatnonzero(strata == c)
        if q == 0:
            continue
        chosen = _diverse(cells, u, emb, q // 2) if by == "uncertain" and q >= 2 else []
        rows += [(i, c, "chosen", 1.0) for i in chosen]
        rest = np.array([i for i in cells if i not in chosen
                         and (not chosen or np.linalg.norm(emb[chosen] - emb[i], axis=1).min() > DUPLICATE)])
        r = min(q - len(chosen), len(rest))
        rows += [(int(i), c, "random", r / len(rest)) for i in rng.choice(rest, r, replace=False)] if r else []
    frame = pd.DataFrame(rows, columns=["cell", "stratum", "half", "p_pick"])
    order = rng.permutation(len(frame))  # asked in a mixed order: the labeller cannot tell the halves apart
    return frame.iloc[order].reset_index(drop=True)
