"""The study's scoring, on hand-made run folders (no training): validators' picks, the default rule,
fold members, ensembles. The study itself trains for an hour; these pin what it computes from runs."""

import json

import numpy as np
import pandas as pd
import pytest

from studies.study import METHODS, extra_jobs, fold_members, job
from studies.study_report import RARE, default_choice, ensembles, score_runs, scores, selection_rows
from submission.choices import CHOICES
from submission.data.classes import CLASSES
from submission.scoring.validators import pick, rank_agreement, selection_key

K = len(CLASSES)


def _logits(truth, correct, rng):
    """Logits whose argmax is the truth for a fraction `correct` of the images, a random class otherwise."""
    pred = np.where(rng.random(len(truth)) < correct, truth, rng.integers(0, K, len(truth)))
    z = rng.normal(0, 0.1, (len(truth), K))
    z[np.arange(len(truth)), pred] += 3.0
    return z.astype(np.float32)


@pytest.fixture
def study_dir(tmp_path):
    """A demo labels folder and two finished runs: per-epoch WBC1/WBC2 outputs improving then falling."""
    rng = np.random.default_rng(0)
    labels = tmp_path / "demo" / "labels"
    labels.mkdir(parents=True)
    truth = {}
    for split in ("WBC1", "WBC2"):
        y = np.arange(220) % K
        images = [f"{split}_{i:04d}.jpg" for i in range(len(y))]
        pd.DataFrame({"Image": images, "LabelID": y}).to_csv(labels / f"{split}.csv", index=False)
        truth[split] = (np.array(images), y)
    done = []
    for seed, path in ((0, [0.2, 0.9, 0.5]), (1, [0.3, 0.6, 0.8])):
        run = tmp_path / "runs" / f"seed{seed}"
        (run / "target_logits").mkdir(parents=True)
        (run / "watch_logits").mkdir()
        (run / "config.json").write_text(json.dumps({"snd_temperature": 0.005, "min_pred_classes": 6,
                                                     "max_entropy_frac": 0.5}))
        for e, acc in enumerate(path):
            np.save(run / "target_logits" / f"epoch{e:03d}.npy", _logits(truth["WBC1"][1], acc, rng))
            np.save(run / "watch_logits" / f"epoch{e:03d}.npy", _logits(truth["WBC2"][1], acc, rng))
        pd.DataFrame({"epoch": range(3), "source_val_f1": [0.5, 0.7, 0.9], "target_mixval": [0.1, 0.3, 0.2],
                      "target_estimate": [0.2, 0.1, 0.15]}).to_csv(run / "metrics.csv", index=False)
        saved = {}
        for split in ("WBC1", "WBC2"):
            images, y = truth[split]
            saved[f"{split}|images"] = images
            for key in ("last|0", "best|0", "best|1", "avg|0", "avg|1", "avg+em|1"):
                saved[f"{split}|{key}"] = _logits(y, 0.95, rng)
        np.savez(run / "study_logits.npz", **saved)
        done.append({"job": job("MCC", "A", seed, METHODS["MCC"]), "run_dir": str(run), "seconds": 1.0, "trained": True})
    return tmp_path / "demo", done


def test_selection_rows_score_each_choice_against_the_labels(study_dir):
    demo, done = study_dir
    per_epoch, picks = selection_rows(done, demo)
    assert len(per_epoch) == 6 and set(picks["choice"]) == set(CHOICES)
    for seed, best_epoch in ((0, 1), (1, 2)):
        rows = per_epoch[per_epoch["seed"] == seed]
        assert rows["wbc1_f1"].idxmax() - rows.index[0] == best_epoch  # the accuracies the fixture drew
        p = picks[picks["seed"] == seed].set_index("choice")
        assert p.loc["last", "epoch"] == 2 and p.loc["source-val", "epoch"] == 2 and p.loc["mixval", "epoch"] == 1
        assert p.loc["estimate", "epoch"] == 0  # the columns of metrics.csv
        assert p.loc["last", "gap"] == pytest.approx(rows["wbc1_f1"].max() - rows["wbc1_f1"].iloc[2])
        assert p.loc["avg", "epoch"] == -1 and p.loc["avg", "wbc1_f1"] > 0.9  # avg.pt's saved outputs
        assert (p["gap"] >= -1e-12).drop("avg").all()  # no single epoch beats the best epoch
    assert picks.set_index(["seed", "choice"]).loc[(0, "last"), "spearman"] == pytest.approx(0.5)


def test_score_runs_and_ensembles(study_dir):
    demo, done = study_dir
    results, logits = score_runs(done, demo)
    assert len(results) == 2 * 2 * 6  # runs x splits x variants
    assert set(results.columns) >= {"macro_f1", "micro_f1", *(f"f1_{c}" for c in RARE)}
    assert (results["train_seconds"] == 1.0).all()
    ens = ensembles(logits, demo, {"both": [("MCC", "A", 0, 0), ("MCC", "A", 1, 0)],
                                   "one trained": [("MCC", "A", 0, 0), ("MCC", "A", 9, 0)]})
    assert set(ens["ensemble"]) == {"both"}  # an ensemble needs at least two trained members
    x = np.mean([logits[("MCC", "A", "avg.pt + TTA", "WBC2", s, 0)] for s in (0, 1)], 0)
    row = ens[(ens["split"] == "WBC2") & (ens["variant"] == "avg.pt + TTA")].iloc[0]
    assert row["macro_f1"] == pytest.approx(scores(logits[("truth", "A", "WBC2")], x.argmax(1))["macro_f1"])


def test_default_choice_rule_ties_go_to_the_simplest():
    rows = [{"choice": c, "gap": g} for c, gaps in {"last": [0.05, 0.07, 0.06], "im": [0.02, 0.03, 0.025],
                                                    "avg": [0.0, 0.04, 0.02], "snd": [0.2, 0.1, 0.3]}.items() for g in gaps]
    choice, table = default_choice(pd.DataFrame(rows))
    assert table["gap_mean"].idxmin() == "avg"
    assert choice == "avg"  # im (0.025) lies within one SE of avg (0.02 +- 0.0115) but avg comes first in CHOICES
    rows = [r for r in rows if r["choice"] != "avg"] + [{"choice": "avg", "gap": g} for g in (0.0, 0.001, 0.002)]
    assert default_choice(pd.DataFrame(rows))[0] == "avg"  # im is now outside avg's SE
    assert list(CHOICES).index("last") < list(CHOICES).index("avg") < list(CHOICES).index("im")


def test_fold_members_pair_with_the_seed_members():
    assert fold_members((3, 4, 5)) == [(3, 0), (4, 1), (5, 2)]
    jobs = extra_jobs(METHODS["MCC"], (3, 4, 5))
    folds = [j for j in jobs if j.method == "fold member"]
    assert [(j.seed, dict(j.settings)["val_fold"]) for j in folds] == [(4, 1), (5, 2)]
    assert all(dict(j.settings)["mcc_weight"] == 1.0 for j in folds)  # the kit's settings, only the fold differs
    assert jobs[:2] == folds  # first: the budget cuts from the end
    assert [j.seed for j in jobs if j.method.startswith("MDD trade-off")] == [3, 4, 5]
    assert [(j.method, j.seed) for j in jobs][-3:] == [("oracle", s) for s in (3, 4, 5)]


def test_pick_and_rank_agreement_match_references():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(1)
    for _ in range(50):
        n = int(rng.integers(3, 9))
        rows = [{"epoch": e, "target_im": float(rng.integers(0, 3)), "target_entropy": float(rng.random()),
                 "target_snd": float(rng.random()), "target_guard_ok": int(rng.integers(0, 2))} for e in range(n)]
        f1 = rng.integers(0, 4, n) / 4
        for select in ("im", "snd", "entropy", "last"):
            keys = [selection_key(r, select) for r in rows]
            first_best = next(i for i, k in enumerate(keys) if k == max(keys))
            assert pick(rows, select) == first_best
            ranks = np.empty(n)
            ranks[sorted(range(n), key=lambda i: keys[i])] = np.arange(n)  # ties broken by epoch
            with np.errstate(all="ignore"):
                ref = spearmanr(ranks, f1).statistic if np.ptp(f1) else float("nan")
            got = rank_agreement(rows, select, f1)
            assert (np.isnan(ref) and np.isnan(got)) or got == pytest.approx(ref)
    assert np.isnan(rank_agreement(rows[:2], "last", [0.1, 0.2]))
