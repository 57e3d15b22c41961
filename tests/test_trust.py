"""The label-free estimates of submission.scoring.trust against naive references on hand-made data."""

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score

from submission.scoring import estimators, trust


def _data(n=400, k=5, seed=0, noise=1.5, signal=2.0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    logits = rng.normal(0, noise, (n, k))
    logits[np.arange(n), labels] += signal
    return logits, labels


def test_temperature_minimises_nll_like_a_fine_grid():
    logits, labels = _data()
    for scale in (0.3, 1.0, 4.0):  # over- and under-confident logits
        t = estimators.fit_temperature(logits * scale, labels)
        grid = np.exp(np.linspace(np.log(0.05), np.log(20), 4001))
        naive = grid[np.argmin([estimators.nll(logits * scale, labels, g) for g in grid])]
        assert t == pytest.approx(naive, rel=2e-3)


def test_nll_and_softmax_match_a_loop():
    logits, labels = _data(n=20)
    t = 1.7
    naive = 0.0
    for z, y in zip(logits, labels):
        e = np.exp(z / t)
        naive -= np.log(e[y] / e.sum())
    assert estimators.nll(logits, labels, t) == pytest.approx(naive / len(labels))
    assert trust.softmax(logits, t).sum(1) == pytest.approx(np.ones(len(logits)))


def test_atc_threshold_matches_a_search_over_thresholds():
    rng = np.random.default_rng(1)
    for n in (10, 57, 200):
        scores = rng.random(n)
        correct = rng.random(n) < rng.random()
        t = estimators.atc_threshold(scores, correct)
        err = 1 - correct.mean()
        candidates = np.concatenate([[-np.inf], np.sort(scores) + 1e-12])
        best = min(abs(np.mean(scores < c) - err) for c in candidates)
        assert abs(np.mean(scores < t) - err) == pytest.approx(best)
    assert estimators.atc_threshold(np.array([0.2, 0.9]), np.array([True, True])) == -np.inf
    assert estimators.atc_threshold(np.array([0.2, 0.9]), np.array([False, False])) == np.inf


def test_atc_on_its_own_source_gives_the_source_accuracy():
    logits, labels = _data(n=300)
    probs = trust.softmax(logits)
    right = probs.argmax(1) == labels
    for kind in ("mc", "ne"):
        s = estimators.score(probs, kind)
        assert np.mean(s >= estimators.atc_threshold(s, right)) == pytest.approx(right.mean(), abs=1 / 300)


def test_scores_match_their_definitions():
    probs = trust.softmax(_data(n=30)[0])
    assert estimators.score(probs, "mc") == pytest.approx([max(p) for p in probs])
    assert estimators.score(probs, "ne") == pytest.approx([sum(q * np.log(q) for q in p) for p in probs])


def test_expected_counts_match_a_loop():
    rng = np.random.default_rng(2)
    probs = trust.softmax(rng.normal(0, 2, (50, 4)))
    p = rng.random(50)
    tp, fp, fn = estimators.expected_counts(probs, p)
    n_tp, n_fp, n_fn = np.zeros(4), np.zeros(4), np.zeros(4)
    for row, pi in zip(probs, p):
        c = int(np.argmax(row))
        n_tp[c] += pi
        n_fp[c] += 1 - pi
        for j in range(4):
            if j != c:
                n_fn[j] += (1 - pi) * row[j] / (1 - row[c])
    assert tp == pytest.approx(n_tp) and fp == pytest.approx(n_fp) and fn == pytest.approx(n_fn)
    assert (tp + fp + fn).sum() == pytest.approx(50 + (1 - p).sum())  # every wrong cell counted once as FN


def test_known_correctness_and_truth_gives_the_true_scores():
    """With p = [right] and each wrong cell's remaining mass on its true class, the expected counts are the
    real ones: accuracy and macro F1 equal scikit-learn's."""
    rng = np.random.default_rng(3)
    k, n = 6, 300
    labels = rng.integers(0, k, n)
    pred = np.where(rng.random(n) < 0.7, labels, rng.integers(0, k, n))
    probs = np.full((n, k), 1e-9)
    probs[np.arange(n), pred] = 0.6
    wrong = pred != labels
    probs[np.flatnonzero(wrong), labels[wrong]] = 0.4
    probs /= probs.sum(1, keepdims=True)
    est = estimators.from_correctness(probs, (~wrong).astype(float))
    assert est.accuracy == pytest.approx(np.mean(~wrong))
    assert est.macro_f1 == pytest.approx(f1_score(labels, pred, average="macro"), abs=1e-6)
    assert est.per_class_f1 == pytest.approx(f1_score(labels, pred, average=None, labels=range(k)), abs=1e-6)
    every = f1_score(labels, pred, average="macro", labels=range(k), zero_division=0)
    assert est.macro_f1_all == pytest.approx(every, abs=1e-6) and est.f1("all") == est.macro_f1_all
    obs = estimators.observed(probs, labels)
    assert obs.macro_f1 == pytest.approx(f1_score(labels, pred, average="macro"))


def test_macro_over_all_classes_counts_a_vanished_class_as_zero():
    """A confident collapse: every cell predicted as class 0 with certainty. Over the classes present the
    expected macro F1 is perfect; over all classes it is 1/K."""
    probs = np.full((30, 4), 1e-9)
    probs[:, 0] = 1.0
    est = estimators.from_correctness(probs, np.ones(30))
    assert est.macro_f1 == pytest.approx(1.0) and est.macro_f1_all == pytest.approx(0.25)


def test_the_blend_is_the_mean_of_agreement_and_atc():
    logits, labels = _data(n=200, seed=6)
    t_logits = _data(n=200, seed=7, signal=1.0)[0]
    est = estimators.estimates(logits, labels, t_logits, [t_logits + 0.5 * _data(n=200, seed=8)[0]])
    b = est["agreement+atc"]
    assert b.accuracy == pytest.approx((est["agreement"].accuracy + est["atc-mc"].accuracy) / 2)
    assert b.per_class_f1 == pytest.approx((est["agreement"].per_class_f1 + est["atc-mc"].per_class_f1) / 2)


def test_agreement_matches_pairwise_counts():
    a, b, c = (np.eye(3)[i] for i in ([0, 1, 2, 0], [0, 1, 1, 0], [2, 1, 2, 0]))
    assert estimators.member_agreement([a, b, c]) == pytest.approx(np.mean([3 / 4, 3 / 4, 2 / 4]))
    assert estimators.member_agreement([a]) is None
    assert estimators.agreement_correctness(np.array([0, 1, 2, 0]), [b, c]) == pytest.approx([0.5, 1, 0.5, 1])


def test_estimates_track_a_shift_and_need_source_validation():
    logits, labels = _data(n=600, seed=4)
    t_logits, t_labels = _data(n=600, seed=5, signal=0.8)  # a harder target
    est = estimators.estimates(logits, labels, t_logits)
    true_acc = np.mean(t_logits.argmax(1) == t_labels)
    assert est["source-val"].accuracy > true_acc + 0.1
    for name in ("calibrated", "atc-mc", "atc-ne", "doc"):
        assert abs(est[name].accuracy - true_acc) < abs(est["source-val"].accuracy - true_acc), name
    assert est["agreement"] is None
    alone = estimators.estimates(None, None, t_logits, [t_logits])
    assert alone["atc-mc"] is None and alone["agreement"].accuracy == 1.0
    src_acc = np.mean(logits.argmax(1) == labels)
    conf = lambda z: trust.softmax(z, estimators.fit_temperature(logits, labels)).max(1).mean()  # noqa: E731
    assert est["doc"].accuracy == pytest.approx(src_acc - (conf(logits) - conf(t_logits)))


def test_the_study_rule_takes_the_lowest_error_and_gives_ties_to_the_earlier():
    import pandas as pd

    from studies import trust_report

    true = np.array([0.2, 0.4, 0.6, 0.8])
    points = pd.DataFrame({"true_f1": true, "true_acc": true,
                           "a_acc": true + 0.1, "a|present_f1": true + [0.1, -0.1, 0.1, -0.1], "a|all_f1": true + 0.3,
                           "b_acc": true, "b|present_f1": true + [0.098, -0.098, 0.098, -0.098], "b|all_f1": true})
    table = trust_report.errors(points, ["a", "a|all", "b|all"]).set_index("estimator")
    assert table.loc["a", "f1_mae"] == pytest.approx(0.1) and table.loc["a|all", "f1_bias"] == pytest.approx(0.3)
    assert table.loc["a", "acc_p90"] == pytest.approx(np.quantile(np.full(4, 0.1), 0.9))
    assert trust_report.choose(points, ["a", "b"]) == "a"  # b is better by less than the tie
    assert trust_report.choose(points, ["a|all", "b|all"]) == "b|all"


def test_leave_one_out_agreement_matches_a_loop_and_never_counts_a_member_against_itself():
    rng = np.random.default_rng(4)
    members = [rng.normal(size=(40, 5)) for _ in range(3)]
    naive = np.zeros(40)
    for i in range(40):
        for j, z in enumerate(members):
            others = np.mean([m[i] for k, m in enumerate(members) if k != j], axis=0)
            naive[i] += (z[i].argmax() == others.argmax()) / len(members)
    assert np.allclose(estimators.loo_agreement_correctness(members), naive)
    pair = members[:2]  # two members: their plain agreement
    assert np.array_equal(estimators.loo_agreement_correctness(pair), (pair[0].argmax(1) == pair[1].argmax(1)).astype(float))
    same = [members[0]] * 3  # identical members agree everywhere; one member alone has no estimate
    assert (estimators.loo_agreement_correctness(same) == 1).all()
    with pytest.raises(ValueError):
        estimators.loo_agreement_correctness(members[:1])


def _measured(beats=True):
    err = {"macro_f1_error_p90": 0.2, "constant_error_p90": 0.37, "points": 20, "labs": 20, "beats_constant": beats}
    return {"constant": 0.72, "labs_named": "test labs",
            "single": {"estimator": "atc corrected", "macro": "all", "terms": {"atc": 1.0}, "intercept": -0.05, **err},
            "ensemble": {"2": {"estimator": "loo corrected", "macro": "all", "members": 2, "terms": {"loo": 1.0},
                               "intercept": 0.15, **err},
                         "3": {"estimator": "linear", "macro": "all", "members": 3, "intercept": 0.1,
                               "terms": {"loo": 0.5, "atc": 0.25, "classes": 0.2}, **err}}}


def test_the_printed_estimate_is_the_measured_terms_plus_the_intercept(monkeypatch):
    """A single run: ATC (max probability) over every class plus the single-run intercept; an ensemble of k: its
    record's weighted terms (leave-one-out agreement, ATC on the members' mean source validation, the share of
    classes predicted) plus its intercept, clipped to [0, 1]; a larger ensemble takes the largest measured k."""
    from submission.scoring.validators import softmax

    monkeypatch.setattr(trust, "measured", _measured)
    classes = [str(c) for c in range(5)]
    src, labels = _data(seed=1)
    members = [_data(seed=s, signal=1.0)[0] for s in (2, 3, 4, 5)]
    one = trust.record(members[0], classes, src, labels, others=[])
    atc = estimators.estimates(src, labels, members[0])["atc-mc"].macro_f1_all
    assert one["use"] == "single" and one["macro_f1"] == pytest.approx(atc - 0.05, abs=1e-4)
    assert one["macro_f1_error"] == 0.2 and one["constant"] == 0.72
    pair = members[:2]
    mean = np.mean(pair, 0)
    rec = trust.record(mean, classes, None, None, pair, ensemble=True)  # needs no source validation
    loo = estimators.from_correctness(softmax(mean), estimators.loo_agreement_correctness(pair)).macro_f1_all
    assert rec["use"] == "ensemble" and rec["members"] == 2 and rec["estimator"] == "loo corrected"
    assert rec["macro_f1"] == pytest.approx(min(loo + 0.15, 1.0), abs=1e-4) and "ensembles of 2" in rec["measured_on"]
    for k in (3, 4):
        group = members[:k]
        mean = np.mean(group, 0)
        loo = estimators.from_correctness(softmax(mean), estimators.loo_agreement_correctness(group)).macro_f1_all
        atc = estimators.estimates(src, labels, mean)["atc-mc"].macro_f1_all
        share = len(set(mean.argmax(1))) / 5
        rec = trust.record(mean, classes, src, labels, group, ensemble=True)
        assert rec["macro_f1"] == pytest.approx(np.clip(0.1 + 0.5 * loo + 0.25 * atc + 0.2 * share, 0, 1), abs=1e-4)
        assert "ensembles of 3" in rec["measured_on"]
        assert not trust.record(mean, classes, None, None, group, ensemble=True)["available"]  # ATC needs the source
    assert "within ± 0.37" in trust.summary_line(one) and "guessing 0.72" in trust.summary_line(one)


def test_an_estimate_that_did_not_beat_the_constant_guess_is_not_given(monkeypatch):
    monkeypatch.setattr(trust, "measured", lambda: _measured(beats=False))
    src, labels = _data(seed=1)
    rec = trust.record(_data(seed=2)[0], [str(c) for c in range(5)], src, labels, others=[])
    assert not rec["available"] and "macro_f1" not in rec and "guessing 0.72" in rec["why"]
    assert trust.summary_line(rec).startswith("estimated macro F1: not given")


def test_the_share_of_classes_predicted_and_the_vanished_count_match_a_count_of_predictions():
    logits = _data(n=50, k=6, seed=3)[0]
    logits[:, [1, 4]] = -99  # two classes no cell is predicted as
    predicted = {int(np.argmax(row)) for row in logits}
    assert estimators.vanished_count(logits) == 6 - len(predicted) == 2
    assert estimators.classes_share(logits) == pytest.approx(len(predicted) / 6)


def test_no_estimate_beyond_the_gate_of_vanished_classes(monkeypatch):
    """With more classes than max_vanished predicted for no cell, the estimate is withheld (a lab without those
    cells and a model that lost them look alike), the error measured beyond the gate is quoted and the labels check
    named; at the gate it is given. The vanished-class warning fires either way."""
    monkeypatch.setattr(trust, "measured", lambda: {**_measured(), "max_vanished": 1})
    src, labels = _data(seed=1)
    classes = [str(c) for c in range(5)]
    logits = _data(seed=2)[0]
    one_gone, two_gone = logits.copy(), logits.copy()
    one_gone[:, 4] = -99
    two_gone[:, 3:] = -99
    assert trust.record(one_gone, classes, src, labels, others=[])["available"]
    rec = trust.record(two_gone, classes, src, labels, others=[])
    assert not rec["available"] and "macro_f1" not in rec
    assert rec["why"].startswith("2 of 5 classes have no predicted cell") and "--labels" in rec["why"]
    assert "erred" not in rec["why"]  # no error measured beyond the gate in this record
    assert any("no cell predicted as 3, 4" in w for w in rec["warnings"])  # vanished, or probably absent
    monkeypatch.setattr(trust, "measured", lambda: {**_measured(), "max_vanished": 1,
                                                    "single": {**_measured()["single"], "beyond_gate_error_p90": 0.41}})
    assert "(on the test labs, 9 in 10 estimates for such single runs erred by up to 0.41)" in trust.record(two_gone, classes, src, labels, others=[])["why"]
    monkeypatch.setattr(trust, "measured", _measured)  # a record without a gate gives every estimate
    assert trust.record(two_gone, classes, src, labels, others=[])["available"]


def test_the_shipped_error_bars_are_the_confirmation_rows_of_their_table():
    """trust.json holds, for the shipped default, the confirmation labs' errors of the printed estimators as the
    table its provenance names holds them, beside the constant guess's."""
    import json
    from pathlib import Path

    import pandas as pd

    m = trust.measured()
    root = Path(__file__).parents[1]
    assert m["version"] >= 3
    assert m["method"] == json.loads((root / "submission/measured/stress_choice.json").read_text())["default"]
    table = pd.read_csv(root / m["provenance"]["table"])
    conf = table[table["labs_of"] == "confirmation"].set_index(["use", "estimator"])
    uses = [("single run", m["single"]["estimator"], m["single"])] + [(f"ensemble ({k})", r["estimator"], r)
                                                                      for k, r in m["ensemble"].items()]
    for use, column, rec in uses:
        row, guess = conf.loc[(use, column)], conf.loc[(use, "constant")]
        assert rec["macro_f1_error_p90"] == pytest.approx(row["p90"], abs=1e-4)
        assert rec["bias"] == pytest.approx(row["bias"], abs=1e-4)
        assert rec["constant_error_p90"] == pytest.approx(guess["p90"], abs=1e-4)
        assert rec["beats_constant"] == bool(row["mae"] < guess["mae"] and row["p90"] < guess["p90"])


def test_a_run_trained_at_another_budget_is_told_the_error_bar_may_not_hold():
    at = trust.measured()["measured_at"]
    same = {"image_size": at["image_size"], "epochs": 2, "iters_per_epoch": at["steps"] // 2, "pretrained": False}
    assert trust.off_budget([same]) is None and trust.off_budget([]) is None
    short = {**same, "iters_per_epoch": 1}
    assert f"for 2 steps from scratch; the ± was measured at {at['image_size']} px" in trust.off_budget([same, short])
    assert "from ImageNet weights" in trust.off_budget([{**same, "pretrained": True}])


def test_a_retargeted_run_carries_its_base_runs_budget(tmp_path):
    """A re-targeted run (--init RUN --epochs 0) has the budget of the run it started from; a taught run adds its
    teaching steps to its base's."""
    at = trust.measured()["measured_at"]
    base = {"image_size": at["image_size"], "epochs": 2, "iters_per_epoch": at["steps"] // 2, "pretrained": False}
    (tmp_path / "base").mkdir()
    (tmp_path / "base/config.json").write_text(json.dumps(base))
    retargeted = {**base, "epochs": 0, "init": str(tmp_path / "base")}
    assert trust.run_steps(retargeted) == at["steps"] and trust.off_budget([retargeted]) is None
    taught = {**base, "epochs": 3, "iters_per_epoch": 100, "init": str(tmp_path / "base/best.pt")}
    assert trust.run_steps(taught) == at["steps"] + 300
    assert trust.run_steps({**retargeted, "init": str(tmp_path / "gone")}) == 0  # a base no longer there: its own
