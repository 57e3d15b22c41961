"""Check and choose with a lab's few labels: macro F1 over a whole split, estimated from the labelled cells.

The labelled cells are a sample of the split with known chances of being picked (the lab report asks for
them: per predicted class, a "chosen" half of uncertain cells, each certain to be asked, and a "random"
half drawn uniformly from the rest). Every cell's prediction is known, so per class k the predicted
count P_k is exact, and the true positives TP_k and true count N_k are estimated with inverse-probability
(Horvitz-Thompson) weights w = 1/p_pick:

    TP_k = sum_labelled w 1[y = k, pred = k]      N_k = sum_labelled w 1[y = k]      F1_k = 2 TP_k / (P_k + N_k)

Prediction-powered (Angelopoulos et al., Science 2023): the model's own probabilities p_i(k) give every
cell's expected counts, and the labelled cells correct their bias (the rectifier):

    TP_k = sum_all 1[pred = k] p_i(k) + sum_labelled w (1[y = k, pred = k] - 1[pred = k] p_i(k))
    N_k  = sum_all p_i(k)             + sum_labelled w (1[y = k] - p_i(k))

Macro F1 is over the classes predicted or (estimated) present, as the challenge scores it. Intervals:
90% percentile bootstrap, resampling the random cells within their group (Rao-Wu rescaled; the chosen
ones are fixed). A class with fewer than SMALL labelled cells is where the bootstrap is blind: if its few
cells were all right, every resample says recall 1. There, while some cells are unlabelled,

    per-class recall: the exact binomial (Clopper-Pearson) interval on the design's effective size
        n_eff = (sum w)^2 / sum w^2 of its labelled cells, with x = recall n_eff successes;
    macro F1: where such a class's labelled cells were all right (or all wrong), each draw's recall of it is
        drawn from Beta(x + 1/2, n_eff - x + 1/2) (Jeffreys) and its true positives are that recall times the
        draw's true count; the interval is the union of the resamples' and these draws' intervals, so the
        uncertainty the resamples cannot see widens it and never moves it (a class with both right and wrong
        cells keeps its resampled recall, which varies).
NumPy and scipy.stats.beta.
"""

import numpy as np

LEVEL = 0.90
BOOT = 2000
SMALL = 10  # fewer labelled cells of a class than this: exact per-class bounds


def design(p_pick, strata, halves, n_cells: int):
    """(weights, group of each labelled cell, whether its group is resampled). Cells with no recorded
    chance (a file labelled by hand) count as a simple random sample of the n_cells."""
    p = np.asarray(p_pick, float)
    unknown = ~np.isfinite(p) | (p <= 0)
    p = np.where(unknown, unknown.sum() / max(n_cells, 1), p)
    keys = [("?", "random") if u else (str(s), str(h)) for u, s, h in zip(unknown, strata, halves)]
    names = sorted(set(keys))
    groups = np.array([names.index(k) for k in keys])
    random_group = np.array([not np.all(p[groups == g] >= 1 - 1e-9) for g in range(len(names))])  # a census is fixed
    return 1.0 / p, groups, random_group


def _f1(tp, n_true, n_pred):
    """Macro F1 (..., K) counts -> (...): over the classes predicted or present."""
    present = (n_pred > 0) | (n_true > 1e-9)
    f1 = np.where(n_pred + n_true > 0, 2 * tp / np.maximum(n_pred + n_true, 1e-12), 0.0)
    return (f1 * present).sum(-1) / np.maximum(present.sum(-1), 1)


def _terms(pred_all, y, idx, w, probs, k: int):
    """Per labelled cell, its weighted contribution to TP and N (n, K), and the population part (K,)."""
    onehot_y, onehot_p = np.eye(k)[y], np.eye(k)[pred_all[idx]]
    tp_i, n_i = onehot_y * onehot_p, onehot_y
    base_tp = base_n = np.zeros(k)
    if probs is not None:
        full_p = np.eye(k)[pred_all]
        base_tp, base_n = (full_p * probs).sum(0), probs.sum(0)
        tp_i, n_i = tp_i - onehot_p * probs[idx], n_i - probs[idx]
    return w[:, None] * tp_i, w[:, None] * n_i, base_tp, base_n


def resample_counts(groups, random_group, boot: int = BOOT, seed: int = 0) -> np.ndarray:
    """(boot, n) multiplicities, the rescaled bootstrap of Rao and Wu (1988) for small strata: each random group
    of m >= 2 cells draws m - 1 with replacement, each draw counting m / (m - 1) (a plain bootstrap of 3 cells
    would understate their variance by a third); fixed groups count once; random groups of one cell are
    resampled together, as one group (collapsed strata), else they would look certain."""
    rng = np.random.default_rng(seed)
    out = np.ones((boot, len(groups)))
    sets = [np.flatnonzero(groups == g) for g in np.flatnonzero(random_group)]
    singles = np.concatenate([m for m in sets if len(m) == 1] or [np.zeros(0, int)])
    for members in [m for m in sets if len(m) >= 2] + ([singles] if len(singles) >= 2 else []):
        m = len(members)  # random groups of one cell are pooled into one (collapsed strata)
        out[:, members] = rng.multinomial(m - 1, np.full(m, 1 / m), size=boot) * m / (m - 1)
    return out


def estimate(pred_all, y, idx, w, k: int, probs=None, counts=None) -> dict:
    """Macro F1 over all cells (labels alone, or prediction-powered with `probs`), its per-class recall,
    and with `counts` (from resample_counts) the bootstrap draws of macro F1."""
    pred_all, y, idx, w = np.asarray(pred_all), np.asarray(y), np.asarray(idx), np.asarray(w, float)
    tp_i, n_i, base_tp, base_n = _terms(pred_all, y, idx, w, probs, k)
    n_pred = np.bincount(pred_all, minlength=k).astype(float)
    tp, n_true = _clip(base_tp + tp_i.sum(0), base_n + n_i.sum(0), n_pred)
    out = {"macro_f1": float(_f1(tp, n_true, n_pred)),
           "recall": np.where(n_true > 1e-9, tp / np.maximum(n_true, 1e-12), np.nan)}
    if counts is not None:
        tp_b, n_b = _clip(base_tp + counts @ tp_i, base_n + counts @ n_i, n_pred)
        out["draws"] = _f1(tp_b, n_b, n_pred)
        out["recall_draws"] = np.where(n_b > 1e-9, tp_b / np.maximum(n_b, 1e-12), np.nan)
        out["counts_draws"] = (tp_b, n_b, n_pred)
    return out


def small_classes(y, w, recall, k: int) -> dict[int, tuple[float, float]]:
    """{class: (successes x, effective size n_eff)} for each class with 1 to SMALL - 1 labelled cells."""
    y, w = np.asarray(y), np.asarray(w, float)
    out = {}
    for c in range(k):
        wc = w[y == c]
        if 0 < len(wc) < SMALL and np.isfinite(recall[c]):
            n_eff = wc.sum() ** 2 / (wc ** 2).sum()
            out[c] = (float(recall[c]) * n_eff, n_eff)
    return out


def clopper_pearson(x: float, n: float, level: float = LEVEL) -> list[float]:
    """The exact binomial interval for x successes in n trials (both may be fractional: an effective size)."""
    from scipy.stats import beta

    a = (1 - level) / 2
    lo = 0.0 if x <= 0 else float(beta.ppf(a, x, n - x + 1))
    hi = 1.0 if x >= n else float(beta.ppf(1 - a, x + 1, n - x))
    return [lo, hi]


def with_small_classes(est: dict, small: dict, seed: int = 0) -> np.ndarray:
    """Macro F1 draws with the recall of each small class whose cells were all right (or all wrong) drawn from its
    Jeffreys Beta (module docstring)."""
    from scipy.stats import beta

    tp_b, n_b, n_pred = (a.copy() for a in est["counts_draws"])
    rng = np.random.default_rng(seed + 1)
    for c, (x, n) in small.items():
        if 1e-9 < x < n - 1e-9:
            continue  # its resamples vary
        r = beta.rvs(x + 0.5, n - x + 0.5, size=len(tp_b), random_state=rng)
        tp_b[:, c] = np.minimum(r * n_b[:, c], n_pred[c])
    return _f1(tp_b, n_b, n_pred)


def _clip(tp, n_true, n_pred):
    """Counts a rectifier can push out of range, brought back: 0 <= TP <= min(P, N)."""
    n_true = np.maximum(n_true, 0.0)
    return np.clip(tp, 0.0, np.minimum(n_pred, n_true)), n_true


def interval(draws, level: float = LEVEL) -> list[float]:
    a = (1 - level) / 2
    d = np.asarray(draws, float)
    return [float(np.nanquantile(d, a, axis=0)), float(np.nanquantile(d, 1 - a, axis=0))]


def check(pred_all, y, idx, w, groups, random_group, classes, probs=None, seed: int = 0) -> dict:
    """The check's record: labelled-cell and prediction-powered macro F1 with 90% intervals, per-class recall."""
    k = len(classes)
    counts = resample_counts(groups, random_group, seed=seed)
    lab = estimate(pred_all, y, idx, w, k, None, counts)
    small = small_classes(y, w, lab["recall"], k) if len(idx) < len(pred_all) else {}  # a census is exact
    macro_iv = interval(lab["draws"])
    if small:
        lo, hi = interval(with_small_classes(lab, small, seed))
        macro_iv = [min(macro_iv[0], lo), max(macro_iv[1], hi)]
    recall_iv = {i: _iv(lab["recall_draws"][:, i]) for i in range(k)}
    recall_iv |= {c: [round(v, 4) for v in clopper_pearson(x, n)] for c, (x, n) in small.items()}
    rec = {"labels": int(len(idx)), "level": LEVEL,
           "labelled": {"macro_f1": lab["macro_f1"], "interval": macro_iv},
           "per_class_recall": {c: [_num(lab["recall"][i]), *recall_iv[i]] for i, c in enumerate(classes)},
           "exact_classes": [classes[c] for c in small],
           "labelled_per_class": {c: int((np.asarray(y) == i).sum()) for i, c in enumerate(classes)}}
    if probs is not None:
        ppi = estimate(pred_all, y, idx, w, k, np.asarray(probs, float), counts)
        rec["prediction_powered"] = {"macro_f1": ppi["macro_f1"], "interval": interval(ppi["draws"])}
    return rec


def _num(v) -> float | None:
    return None if not np.isfinite(v) else round(float(v), 4)


def _iv(d) -> list:
    d = d[np.isfinite(d)]
    return [None, None] if not len(d) else [round(v, 4) for v in interval(d)]


def choose(preds: dict, default: str, y, idx, w, groups, random_group, k: int, seed: int = 0) -> dict:
    """The rule, fixed before any study: keep `default` unless another candidate's labelled macro F1
    beats it by more than the 90% interval of the difference (its lower end above 0, paired bootstrap
    on the same resampled cells); of several such, the highest estimate."""
    counts = resample_counts(groups, random_group, seed=seed)
    est = {n: estimate(p, y, idx, w, k, None, counts) for n, p in preds.items()}
    rows, chosen, best = [], default, est[default]["macro_f1"]
    for name, e in est.items():
        diff = e["draws"] - est[default]["draws"]
        lo, hi = interval(diff)
        rows.append({"candidate": name, "macro_f1": e["macro_f1"], "vs_default": e["macro_f1"] - est[default]["macro_f1"],
                     "interval": [lo, hi]})
        if name != default and lo > 0 and e["macro_f1"] > best:
            chosen, best = name, e["macro_f1"]
    why = (f"{default} kept: no other candidate beat it by more than the {LEVEL:.0%} interval of the difference"
           if chosen == default else
           f"{chosen} beat {default} by {best - est[default]['macro_f1']:+.3f}, its {LEVEL:.0%} interval above 0")
    return {"chosen": chosen, "default": default, "why": why, "labels": int(len(idx)), "candidates": rows}
