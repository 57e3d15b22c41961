"""A lab's few labels: the file, asking for cells, the check's estimators against naive references, the choice."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from submission.data.classes import CLASSES
from submission.data.labels import hold_out, labels_frame, merge, read_lab_labels
from submission.data.rundata import teach_weights
from submission.errors import KitError
from submission.predict.ask import ask, quotas
from submission.scoring.check import check, choose, clopper_pearson, design, estimate, resample_counts

K = len(CLASSES)
IMAGES = [f"{i}.TIF" for i in range(40)]


def _write(tmp_path, rows, name="labels.csv", header="Split,Image,label,LabelID"):
    path = tmp_path / name
    path.write_text(header + "\n" + "".join(r + "\n" for r in rows))
    return path


def test_a_good_file_reads_with_its_unsure_rows_counted(tmp_path):
    path = _write(tmp_path, ["WBC1,3.TIF,monocyte,9", "WBC1,4.TIF,unsure,", "WBC1,5.TIF,basophil,0", "WBC1,5.TIF,basophil,0"])
    lab = read_lab_labels(path, "WBC1", IMAGES)
    assert lab.images == ["3.TIF", "5.TIF"] and lab.ids.tolist() == [9, 0] and lab.unsure == 1
    assert np.isnan(lab.frame["p_pick"]).all()


@pytest.mark.parametrize("rows, header, words", [
    (["WBC1,99.TIF,monocyte,9"], None, "not in WBC1"),
    (["WBC1,3.TIF,blast,"], None, "unknown class 'blast'"),
    (["WBC1,3.TIF,monocyte,9", "WBC1,3.TIF,basophil,0"], None, "has two labels (monocyte, basophil)"),
    ([], None, "holds no labels"),
    (["WBC2,3.TIF,monocyte,9"], None, "labels cells of 'WBC2'"),
    (["WBC1,3.TIF,monocyte,9", "WBC2,3.TIF,monocyte,9"], None, "several splits"),
    (["WBC1,3.TIF,monocyte,8"], None, "name different classes"),
    (["3.TIF,monocyte"], "Image,label", "no Split column"),
    (["WBC1,3.TIF,unsure,"], None, "every cell is marked unsure"),
])
def test_a_bad_file_stops_with_one_line(tmp_path, rows, header, words):
    path = _write(tmp_path, rows, header=header or "Split,Image,label,LabelID")
    with pytest.raises(KitError, match=None) as e:
        read_lab_labels(path, "WBC1", IMAGES)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_an_empty_file_and_a_missing_one(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    for path, words in ((tmp_path / "empty.csv", "is empty"), (tmp_path / "none.csv", "no labels file")):
        with pytest.raises(KitError, match=words):
            read_lab_labels(path, "WBC1", IMAGES)


def test_merge_keeps_agreement_and_marks_disagreement_unsure():
    a = labels_frame("WBC1", ["1.TIF", "2.TIF", "3.TIF"], [0, 1, 2])
    b = labels_frame("WBC1", ["2.TIF", "3.TIF", "4.TIF"], [1, 5, 7])
    merged, differ = merge(a, b)
    got = dict(zip(merged["Image"], merged["label"]))
    assert got == {"1.TIF": CLASSES[0], "2.TIF": CLASSES[1], "3.TIF": "unsure", "4.TIF": CLASSES[7]}
    assert differ.to_dict("records") == [{"Image": "3.TIF", "first": CLASSES[2], "second": CLASSES[5]}]


def _population(n=400, seed=0, acc=0.7):
    rng = np.random.default_rng(seed)
    y = rng.choice(K, n, p=np.r_[np.full(K - 1, 0.05), 0.5])
    pred = np.where(rng.random(n) < acc, y, rng.integers(0, K, n))
    return y, pred


def test_every_cell_labelled_gives_sklearn_macro_f1_exactly():
    y, pred = _population()
    idx = np.arange(len(y))
    est = estimate(pred, y, idx, np.ones(len(y)), K)
    assert est["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"), abs=1e-12)


def _naive_ht_macro_f1(pred, y_lab, idx, w, k):
    """The same estimate written as loops: weighted counts, then F1 over the classes predicted or present."""
    f1s = []
    for c in range(k):
        n_pred = sum(1 for p in pred if p == c)
        tp = sum(wi for i, yi, wi in zip(idx, y_lab, w) if yi == c and pred[i] == c)
        n_true = sum(wi for yi, wi in zip(y_lab, w) if yi == c)
        if n_pred == 0 and n_true == 0:
            continue
        f1s.append(2 * min(tp, n_pred) / (n_pred + n_true))
    return sum(f1s) / len(f1s)


def test_weighted_estimate_matches_a_naive_loop():
    y, pred = _population(seed=1)
    rng = np.random.default_rng(2)
    idx = rng.choice(len(y), 60, replace=False)
    w = rng.uniform(1, 10, 60)
    got = estimate(pred, y[idx], idx, w, K)["macro_f1"]
    assert got == pytest.approx(_naive_ht_macro_f1(pred, y[idx], idx, w, K), abs=1e-12)


def test_prediction_powered_is_exact_when_the_model_knows_the_truth():
    y, pred = _population(seed=3)
    idx = np.random.default_rng(4).choice(len(y), 20, replace=False)
    est = estimate(pred, y[idx], idx, np.full(20, len(y) / 20), K, probs=np.eye(K)[y])
    assert est["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"), abs=1e-9)


def test_a_simple_random_sample_is_nearly_unbiased_and_the_interval_covers():
    y, pred = _population(n=600, seed=5)
    truth = f1_score(y, pred, average="macro")
    rng = np.random.default_rng(6)
    ests, covered = [], []
    for r in range(60):
        idx = rng.choice(len(y), 150, replace=False)
        w, g, rnd = design(np.full(150, np.nan), [""] * 150, [""] * 150, len(y))
        rec = check(pred, y[idx], idx, w, g, rnd, list(CLASSES), seed=r)
        ests.append(rec["labelled"]["macro_f1"])
        lo, hi = rec["labelled"]["interval"]
        covered.append(lo <= truth <= hi)
    assert abs(np.mean(ests) - truth) < 0.03
    assert np.mean(covered) >= 0.75


def _naive_exact_bounds(x: int, n: int, level=0.90):
    """Clopper-Pearson by its definition: the p at which seeing x or more (x or fewer) has chance (1 - level) / 2,
    found by bisection on binomial sums written out."""
    from math import comb

    tail_up = lambda p: sum(comb(n, j) * p ** j * (1 - p) ** (n - j) for j in range(x, n + 1))  # noqa: E731
    tail_down = lambda p: sum(comb(n, j) * p ** j * (1 - p) ** (n - j) for j in range(0, x + 1))  # noqa: E731
    a = (1 - level) / 2

    def solve(f, increasing):
        lo, hi = 0.0, 1.0
        for _ in range(80):
            mid = (lo + hi) / 2
            if (f(mid) < a) == increasing:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    return [0.0 if x == 0 else solve(tail_up, True), 1.0 if x == n else solve(tail_down, False)]


@pytest.mark.parametrize("x,n", [(0, 1), (1, 1), (3, 4), (2, 7), (9, 9), (5, 12)])
def test_clopper_pearson_matches_its_definition(x, n):
    assert clopper_pearson(x, n) == pytest.approx(_naive_exact_bounds(x, n), abs=1e-6)


def test_a_class_whose_few_labels_were_all_right_is_not_certain():
    """A one-patient lab: 96 cells, 55 labelled as the report asks (every cell of a rare predicted class, a random
    share of the others), three classes with 1, 3 and 4 cells; every labelled cell right. The resamples alone said
    recall [1, 1] for those classes and macro F1 0.800 [0.800, 0.800]."""
    y = np.repeat([10, 7, 9, 2, 8], [80, 1, 3, 4, 8])
    pred = y.copy()
    pred[:3] = 8  # three lymphocytes called segmented neutrophils, none of them labelled
    rng = np.random.default_rng(0)
    rare = np.flatnonzero(np.isin(y, [7, 9, 2]))
    lymph = rng.choice(np.arange(3, 80), 42, replace=False)
    neut = np.arange(88, 92)
    idx = np.r_[rare, lymph, neut]
    p_pick = np.r_[np.ones(len(rare)), np.full(42, 42 / 77), np.full(4, 4 / 11)]
    halves = ["chosen"] * len(rare) + ["random"] * 46
    w, g, rnd = design(p_pick, pred[idx], halves, len(y))
    rec = check(pred, y[idx], idx, w, g, rnd, list(CLASSES))
    lo, hi = rec["labelled"]["interval"]
    assert hi - lo > 0.02 and lo <= rec["labelled"]["macro_f1"] <= hi
    for c in (7, 9, 2):  # 1, 3 and 4 labelled cells, all right: exact bounds
        point, r_lo, r_hi = rec["per_class_recall"][CLASSES[c]]
        assert point == 1.0 and r_hi == 1.0 and r_lo < 0.6
    census = check(pred, y, np.arange(len(y)), *design(np.ones(len(y)), [""] * len(y), [""] * len(y), len(y)),
                   list(CLASSES))
    assert census["labelled"]["interval"][0] == census["labelled"]["interval"][1]  # every cell labelled: exact


def test_chosen_cells_are_fixed_in_the_bootstrap():
    w, g, rnd = design([1.0, 1.0, 0.5, 0.5], ["a", "a", "a", "a"], ["chosen", "chosen", "random", "random"], 10)
    counts = resample_counts(g, rnd, boot=50)
    assert (counts[:, :2] == 1).all() and (counts[:, 2:].sum(1) == 2).all()
    assert w.tolist() == [1, 1, 2, 2]


def test_choose_keeps_the_default_unless_another_clearly_wins():
    y, good = _population(n=300, seed=7, acc=0.95)
    bad = np.where(np.random.default_rng(8).random(300) < 0.5, good, (good + 1) % K)
    idx = np.arange(0, 300, 3)
    w, g, rnd = design(np.full(len(idx), np.nan), [""] * len(idx), [""] * len(idx), 300)
    same = choose({"kit": good, "other": good.copy()}, "kit", y[idx], idx, w, g, rnd, K)
    assert same["chosen"] == "kit" and "kept" in same["why"]
    better = choose({"kit": bad, "other": good}, "kit", y[idx], idx, w, g, rnd, K)
    assert better["chosen"] == "other" and better["candidates"][1]["interval"][0] > 0


def test_asking_is_stratified_halved_and_never_asks_a_duplicate_twice():
    rng = np.random.default_rng(9)
    logits = rng.normal(0, 2, (300, K))
    logits[1] = logits[0]  # the same image twice
    logits[0] = logits[1] = np.r_[np.zeros(K - 1), 0.01]  # the most uncertain cell: chosen first
    members = [logits + rng.normal(0, 0.5, logits.shape) for _ in range(2)]
    members[0][1], members[1][1] = members[0][0], members[1][0]
    asked = ask(logits, members, 55, "uncertain", seed=0)
    strata = logits.argmax(1)
    assert len(asked) == 55 and asked["cell"].is_unique and not {0, 1} <= set(asked["cell"])
    assert (strata[asked["cell"]] == asked["stratum"]).all()
    for c, rows in asked.groupby("stratum"):
        assert (rows["half"] == "chosen").sum() == len(rows) // 2
        rand = rows[rows["half"] == "random"]
        assert ((rand["p_pick"] > 0) & (rand["p_pick"] <= 1)).all()
    assert set(ask(logits, members, 55, "random")["half"]) == {"random"}
    assert quotas(np.array([0] * 3 + [1] * 50 + [2] * 50), 3, 12).tolist() == [3, 5, 4]


def test_hold_out_keeps_a_known_chance_and_never_overlaps(tmp_path):
    frame = labels_frame("WBC1", IMAGES[:10], [0] * 5 + [1] * 5)
    frame["stratum"], frame["half"], frame["p_pick"] = ["a"] * 5 + ["b"] * 5, ["random"] * 10, 0.5
    frame.to_csv(tmp_path / "l.csv", index=False)
    taught, held = hold_out(read_lab_labels(tmp_path / "l.csv", "WBC1", IMAGES), seed=0)
    assert not set(taught.images) & set(held.images) and len(taught) + len(held) == 10
    assert len(held) == 4 and np.allclose(held.frame["p_pick"], 0.5 * 2 / 5)


def test_teaching_draws_the_labs_cells_as_one_more_source_per_class():
    sources = np.array([0] * 90 + [1] * 10 + [2] * 50)
    lab = np.array([0, 0, 1, 2])
    w = teach_weights(sources, lab, 2, True, [np.array([0, 1, 2]), np.array([0, 1])])
    per_class = [w[np.r_[sources, lab] == c].sum() for c in range(3)]
    assert np.allclose(per_class, 1 / 3)
    lab_share = [w[len(sources):][lab == c].sum() / per_class[c] for c in range(3)]
    assert np.allclose(lab_share, [1 / 3, 1 / 3, 1 / 2])  # class 2: one source has it, so the lab's is half
    assert pd.Series(w).ge(0).all()
