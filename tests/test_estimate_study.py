"""The estimate study's candidates against naive references: a corrected feature's intercept is its mean signed
error, the linear candidate is ridge regression on standardised features, and leave-one-lab-out never fits on the
lab it scores."""

import numpy as np
import pandas as pd
import pytest

from studies import estimate_protocol as P
from studies import estimate_study as E


def _points(n_labs=6, per_lab=3, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for lab in range(n_labs):
        for _ in range(per_lab):
            f = {c: rng.uniform(0, 1) for c in ("atc", "calibrated", "doc", "classes")}
            rows.append({"lab": f"lab{lab}", "members": 1, **f,
                         "true_f1": float(np.clip(0.5 * f["atc"] + 0.3 * f["doc"] + rng.normal(0, 0.05), 0, 1))})
    return pd.DataFrame(rows)


def test_a_corrected_feature_subtracts_its_mean_signed_error():
    pts = _points()
    model = E.fit(pts, "atc corrected", 1)
    assert model["terms"] == {"atc": 1.0}
    assert model["intercept"] == pytest.approx((pts["true_f1"] - pts["atc"]).mean(), abs=1e-6)
    both = E.fit(pts, "mean corrected", 1)
    mean = (pts["atc"] + pts["calibrated"]) / 2
    assert both["intercept"] == pytest.approx((pts["true_f1"] - mean).mean(), abs=1e-6)


def test_the_linear_candidate_is_ridge_on_standardised_features():
    pts = _points()
    cols = list(P.FEATURES[P.use(1)])
    x, y = pts[cols].to_numpy(), pts["true_f1"].to_numpy()
    xs = (x - x.mean(0)) / x.std(0)
    a = np.c_[xs, np.ones(len(y))]  # naive: the penalised normal equations, the intercept not penalised
    pen = np.diag([P.RIDGE] * len(cols) + [0.0])
    coef = np.linalg.solve(a.T @ a + pen, a.T @ y)
    model = E.fit(pts, "linear", 1)
    want = xs @ coef[:-1] + coef[-1]
    got = E.predict(model, pts, clip=False)
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_leave_one_lab_out_scores_each_lab_with_a_fit_on_the_others():
    pts = _points()
    err = E.leave_one_lab_out(pts, "atc corrected", 1)
    for lab in pts["lab"].unique():
        held = (pts["lab"] == lab).to_numpy()
        rest = pts[~held]
        c = (rest["true_f1"] - rest["atc"]).mean()
        want = np.clip(pts[held]["atc"] + c, 0, 1) - pts[held]["true_f1"]
        np.testing.assert_allclose(err[held], want, atol=1e-6)


def test_pooled_scores_every_candidate_by_leave_one_lab_out_over_all_labs(tmp_path):
    from typer.testing import CliRunner

    rng = np.random.default_rng(1)
    feats = ("atc", "calibrated", "doc", "classes", "loo", "agreement")
    rows = [{"lab": f"lab{lab}", "members": k, "true_f1": rng.uniform(), **{f: rng.uniform() for f in feats},
             "vanished": 3 if lab == 5 else 0} for lab in range(6) for k in P.GROUPS for _ in P.GROUPS[k]]
    pd.DataFrame(rows).to_csv(tmp_path / "points.csv", index=False)
    result = CliRunner().invoke(E.app, ["pooled", "--docs", str(tmp_path)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "pooled.csv")
    # lab5 lies beyond the gate (3 classes without a cell): only the 5 estimable labs are scored
    assert len(table) == sum(len(P.candidates(k)) for k in P.GROUPS) and set(table["labs"]) == {5}


def test_the_gate_keeps_points_with_at_most_max_vanished_classes_gone_and_reports_what_it_withholds():
    pts = _points(n_labs=4, per_lab=5)
    pts["vanished"] = [0, 1, 2, 5, 1] * 4
    within = pts["vanished"] <= P.MAX_VANISHED
    assert E.estimable(pts).index.equals(pts.index[within])
    model = {"terms": {"atc": 1.0}, "intercept": 0.0}
    row = E.gate_table(pts, {1: model}).iloc[0]
    assert row["estimable_share"] == pytest.approx(within.mean()) and row["beyond_points"] == (~within).sum()
    err = (np.clip(pts["atc"], 0, 1) - pts["true_f1"])[~within]
    assert row["beyond_p90"] == pytest.approx(np.quantile(np.abs(err), 0.9)) and row["beyond_bias"] == pytest.approx(err.mean())
    bad = pts["true_f1"] < 0.5
    assert row["no estimate (gate): on bad"] == pytest.approx((~within)[bad].mean())
    low = within & (pts["atc"] < 0.5)
    assert row["estimated macro F1 is low: on good"] == pytest.approx(low[~bad].mean())
