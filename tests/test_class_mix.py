"""The lab's estimated class mix (scoring/class_mix): BCTS against the model that made the data, MLLS recovering a
shifted prior, and "probably absent" told apart from "vanished"."""

import numpy as np
import pytest

from submission.scoring import class_mix, trust

MU = np.array([-2.0, 0.0, 2.0])
CLASSES = ["a", "b", "c"]


def _cells(prior, n, seed):
    """Cells of three classes, 1-D features N(mu_k, 1); an over-confident, biased model's logits:
    2 x the true log-likelihoods + a bias."""
    rng = np.random.default_rng(seed)
    y = rng.choice(3, n, p=prior)
    x = rng.normal(MU[y], 1.0)
    loglik = -((x[:, None] - MU[None, :]) ** 2) / 2
    return 2.0 * loglik + np.array([0.6, 0.0, -0.6]), y


def _nll(z, y, t, b):
    p = class_mix.calibrated(z, t, b)
    return -np.log(p[np.arange(len(y)), y]).mean()


def test_bcts_recovers_the_temperature_and_bias_that_made_the_data():
    z, y = _cells([1 / 3] * 3, 6000, 0)
    t, b = class_mix.fit_bcts(z, y)
    assert t == pytest.approx(2.0, rel=0.05)
    centred = b - b.mean()
    assert centred == pytest.approx(np.array([-0.3, 0.0, 0.3]), abs=0.08)
    best = _nll(z, y, t, b)
    assert best < _nll(z, y, 1.0, np.zeros(3))
    for dt, db in ((0.05, 0), (-0.05, 0), (0, 0.05)):  # a minimum: no nearby point is better
        assert best <= _nll(z, y, t + dt, b + np.array([db, 0, 0])) + 1e-9


def test_mlls_recovers_a_shifted_prior_and_tells_an_absent_class():
    val_z, val_y = _cells([1 / 3] * 3, 3000, 1)
    target_z, target_y = _cells([0.7, 0.3, 0.0], 2000, 2)
    truth = np.bincount(target_y, minlength=3) / len(target_y)
    mix = class_mix.estimate(target_z, val_z, val_y, CLASSES, boot=100)
    share = np.array([mix["share"][c] for c in CLASSES])
    assert share == pytest.approx(truth, abs=0.04)  # the interval holds the cells' sampling, not the calibration's
    for c, s in mix["share"].items():
        lo, hi = mix["interval"][c]
        assert lo <= s <= hi
    assert mix["probably_absent"] == ["c"]
    assert mix["temperature"] == pytest.approx(2.0, rel=0.1)


def test_a_class_with_no_cell_is_probably_absent_or_vanished_as_the_mix_says():
    rec = {"agreement": None, "predicted_counts": {"a": 10, "b": 0, "c": 0},
           "class_mix": {"probably_absent": ["c"]}}
    found = " | ".join(trust.warnings(rec, CLASSES))
    assert "no cell predicted as b: a vanished class" in found
    assert "no cell predicted as c, and the lab's estimated class mix puts it under 1%: probably absent" in found
    assert "unless the model lost it" in found


def test_the_bootstraps_em_is_the_plain_em_on_each_resample():
    from submission.methods.prior import em_prior

    rng = np.random.default_rng(5)
    probs = rng.dirichlet(np.ones(3), 40)
    counts = rng.multinomial(40, np.full(40, 1 / 40), size=4)
    got = class_mix.weighted_em(probs, [0.2, 0.3, 0.5], counts, iters=1000, tol=1e-9)
    for b in range(4):
        resample = np.repeat(probs, counts[b], axis=0)
        assert got[b] == pytest.approx(em_prior(resample, [0.2, 0.3, 0.5], iters=1000, tol=1e-9)[1], abs=1e-6)


def _naive_expected_f1(conf_counts, prior, floor):
    """Expected counts written out: a lab of n cells with `prior`, each true class predicted as the fold did."""
    n, k = 1e6, len(prior)
    per = []
    for c in range(k):
        if prior[c] <= floor:
            continue
        row = conf_counts[c] / conf_counts[c].sum()
        tp = n * prior[c] * row[c]
        pred = sum(n * prior[j] * conf_counts[j][c] / conf_counts[j].sum() for j in range(k))
        per.append(2 * tp / (pred + n * prior[c]))
    return sum(per) / len(per)


def test_the_prior_aware_f1_is_the_expected_f1_of_the_folds_confusion_on_the_labs_mix():
    rng = np.random.default_rng(6)
    y = rng.integers(0, 3, 500)
    pred = np.where(rng.random(500) < 0.7, y, rng.integers(0, 3, 500))
    conf = np.zeros((3, 3))
    np.add.at(conf, (y, pred), 1)
    for prior in ([1 / 3] * 3, [0.8, 0.2, 0.0], [0.5, 0.495, 0.005]):
        got, _ = class_mix.prior_aware_f1(pred, y, prior)
        assert got == pytest.approx(_naive_expected_f1(conf, np.array(prior), class_mix.ABSENT), abs=1e-9)
