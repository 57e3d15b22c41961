"""The lab bank (random target labs around the demo's sources), its protocol, and the do-no-harm check."""

import dataclasses
import hashlib
import json
import os

import numpy as np
import pytest

from studies import protocol as P
from studies.lab_bank import RANGES, RARE_MIN, draw_lab, lab_spec, out_of_ranges, parse_labs, write_lab
from submission.data.classes import CLASSES
from submission.data.files import cache_key
from submission.predict.harm import harm_check


def _digest(root, parts=("Acevedo_20", "Matek_19")):
    h = hashlib.sha256()
    for part in parts:
        for f in sorted((root / part).rglob("*")):
            if f.is_file():
                h.update(str(f.relative_to(root)).encode() + f.read_bytes())
    return h.hexdigest()


def test_the_ranges_contain_the_demo_lab_lab_b_and_every_drawn_lab():
    for name in ("demo", "lab_b"):
        assert out_of_ranges(lab_spec(name)[0]) == []
    for seed in range(40):
        domain, prior = draw_lab(seed)
        assert out_of_ranges(domain) == [], seed
        assert sum(prior) == pytest.approx(1.0) and min(prior) >= RARE_MIN * 0.9
    assert draw_lab(3) == draw_lab(3) and draw_lab(3)[0] != draw_lab(4)[0]
    # the ranges have room beyond the demo lab (e.g. its scale error 1.10 and blur 3.0)
    assert RANGES["scale_error"] == (0.85, 1.15) and RANGES["blur_sigma"][1] > 3.0


def test_priors_cover_leukaemia_clinics_and_routine_labs_with_rare_classes():
    priors = np.array([draw_lab(s)[1] for s in range(200)])
    blast, seg, lymph = (CLASSES.index(c) for c in ("myeloblast", "neutrophil_segmented", "lymphocyte_typical"))
    assert (priors[:, blast] > 0.2).sum() >= 20  # blast-heavy labs
    assert (priors[:, seg] + priors[:, lymph] > 0.6).sum() >= 20  # routine labs
    assert (priors.min(1) < 0.02).mean() > 0.5  # most labs have a class at 1-2%


def test_bank_sources_are_the_demos_bytes_and_labs_share_them(tmp_path, demo):
    bank = tmp_path / "bank"
    root = write_lab(bank, "lab5", scale=0.002, n_target=30, workers=1)
    assert _digest(bank / "sources") == _digest(demo / "data")  # byte-identical to the demo's sources
    other = write_lab(bank, "lab6", scale=0.002, n_target=30, workers=1)
    a = sorted(p for p in (root / "Acevedo_20").rglob("*") if p.is_file())[0]
    b = other / a.relative_to(root)
    assert os.stat(a).st_ino == os.stat(b).st_ino  # hard links: one file
    rel = [str(a.relative_to(root))]
    assert cache_key(rel, root, size=36) == cache_key(rel, other, size=36)  # so one cache entry
    lab = json.loads((bank / "lab5" / "lab.json").read_text())
    assert lab["lab"] == "lab5" and set(lab["prior"]) == set(CLASSES) and "hue_turn" in lab["domain"]
    assert len(list((root / "WBC1" / "DATA-VAL").glob("*.TIF"))) == 30
    assert (bank / "lab5" / "labels" / "WBC2.csv").is_file() and (root / "splits" / "WBC2.csv").is_file()
    wbc = sorted((root / "WBC2" / "DATA-TEST").glob("*.TIF"))[0]
    assert sorted(p.name for p in (root / "WBC2" / "DATA-TEST").glob("*.TIF")) != sorted(
        p.name for p in (other / "WBC2" / "DATA-TEST").glob("*.TIF"))  # each lab draws its own cells
    before = wbc.stat().st_mtime_ns
    write_lab(bank, "lab5", scale=0.002, n_target=30, workers=1)  # already written: kept
    assert wbc.stat().st_mtime_ns == before


def test_lab_names_parse_and_unknown_ones_are_refused():
    from submission.errors import KitError

    assert parse_labs("1-3,101,demo") == ["lab1", "lab2", "lab3", "lab101", "demo"]
    with pytest.raises(KitError, match="unknown lab"):
        parse_labs("lab_x")


def test_the_protocol_keeps_selection_and_test_labs_apart():
    assert len(P.SELECTION_LABS) >= 6 and len(P.TEST_LABS) >= 10
    assert not set(P.SELECTION_LABS) & set(P.TEST_LABS) and not set(P.NAMED_LABS) & set(P.TEST_LABS)
    assert not P.trains_on_target("source-only") and not P.trains_on_target("strong aug")
    assert not P.trains_on_target("AdaBN") and P.adapts("AdaBN")
    assert P.trains_on_target("MCC (kit)") and P.trains_on_target("colour aug") and not P.adapts("strong aug")


def test_the_rule_takes_the_best_mean_among_safe_methods_else_the_best_worst_case():
    gains = {"MCC (kit)": [0.3, -0.2], "IM": [0.05, 0.0], "MDD": [0.08, -0.005], "strong aug": [0.5, 0.5]}
    assert P.choose(gains) == ["MDD", "IM", "MCC (kit)"]  # strong aug does not adapt; MCC loses a lab
    assert P.choose({"MCC (kit)": [0.3, -0.2], "IM": [0.0, -0.05]}) == ["IM", "MCC (kit)"]
    tie = {"MCC (kit)": [0.050, 0.0], "IM": [0.053, 0.0], "MCC (kit) + check": [0.051, 0.0]}
    assert P.choose(tie)[0] == "MCC (kit)"  # within the tie, the simplest


def test_the_frozen_choice_matches_its_hash():
    from pathlib import Path

    frozen = Path(__file__).parents[1] / "submission" / "measured" / "frozen_choice.json"
    f = json.loads(frozen.read_text())
    assert f["sha256"] == P.settings_hash(f["recipe"], f["settings"])
    assert P.METHODS[P.base(f["choice"])] == (f["recipe"], f["settings"]) and f["budget"] == P.BUDGET


def _naive_check(adapted, source, share, keep, confident, max_flip):
    n, k = adapted.shape
    a = [sum(1 for i in range(n) if adapted[i].argmax() == c) / n for c in range(k)]
    s = [sum(1 for i in range(n) if source[i].argmax() == c) / n for c in range(k)]
    vanished = [c for c in range(k) if s[c] >= share and a[c] < keep * s[c]]
    sure = [i for i in range(n) if source[i].max() >= confident]
    flip = sum(adapted[i].argmax() != source[i].argmax() for i in sure) / len(sure) if sure else float("nan")
    return bool(vanished) or (bool(sure) and flip > max_flip), vanished, flip


def test_the_harm_check_matches_a_naive_count():
    rng = np.random.default_rng(0)
    for trial in range(20):
        source = rng.dirichlet(np.full(11, 0.1), 60)  # many confident rows
        adapted = source.copy()
        gone = rng.integers(11)
        adapted[:, gone] *= 0.01 if trial % 2 else 1.0  # every other trial erases a class
        adapted = rng.permutation(adapted) if trial % 5 == 0 else adapted  # some trials flip many images
        got = harm_check(adapted, source, 0.03, 0.3, 0.9, 0.5)
        fires, vanished, flip = _naive_check(adapted, source, 0.03, 0.3, 0.9, 0.5)
        assert got.fires == fires and got.vanished == [CLASSES[c] for c in vanished]
        assert got.flip_rate == pytest.approx(flip, nan_ok=True)


def test_the_harm_check_is_quiet_on_agreement_and_names_a_vanished_class():
    source = np.eye(11)[np.arange(110) % 11] * 0.95 + 0.005
    assert not harm_check(source, source).fires
    adapted = source.copy()
    adapted[:, CLASSES.index("basophil")] = 0
    check = harm_check(adapted, source)
    assert check.fires and check.vanished == ["basophil"] and "basophil" in check.message()


def test_the_bank_study_shares_source_only_runs_resumes_and_scores(tmp_path, demo, monkeypatch):
    from rich.console import Console

    from studies import bank_report
    from studies.bank_study import run_phase
    from submission.errors import KitError

    tiny = {"image_size": 32, "epochs": 1, "iters_per_epoch": 2, "batch_size": 8, "bottleneck_dim": 32,
            "head_width": 32, "min_pred_classes": 1, "max_entropy_frac": 1.0, "bn_batches": 2, "average_last": 1}
    monkeypatch.setattr(P, "BUDGET", tiny)
    bank, out = tmp_path / "bank", tmp_path / "study"
    for lab in ("lab5", "lab6"):
        write_lab(bank, lab, scale=0.002, n_target=30, workers=1)
    methods = ["source-only", "AdaBN", "MCC (kit)"]
    assert run_phase(methods, ["lab5", "lab6"], (0,), bank, out, "cpu", 0, 1e9, Console()) == 0
    assert [p.parent.name for p in (out / "runs").glob("*/*/seed0")] and \
        sorted(str(p.relative_to(out / "runs")) for p in (out / "runs").glob("*/*/seed0")) == [
            "mcc-kit/lab5/seed0", "mcc-kit/lab6/seed0", "source-only/every-lab/seed0"]  # AdaBN: source-only's weights
    preds = sorted((out / "preds").glob("*/*/seed0.npz"))
    assert len(preds) == 6
    z = np.load(P.pred_file(out, "AdaBN", "lab5", 0))
    s = np.load(P.pred_file(out, "source-only", "lab5", 0))
    assert z["WBC2"].shape == (30, 11) and not np.allclose(z["WBC2"], s["WBC2"])  # BatchNorm refit on the lab
    best = out / "runs" / "mcc-kit" / "lab5" / "seed0" / "best.pt"
    before = best.stat().st_mtime_ns
    run_phase(methods, ["lab5", "lab6"], (0,), bank, out, "cpu", 0, 1e9, Console())  # resumes: nothing retrained
    assert best.stat().st_mtime_ns == before
    runs = bank_report.score_runs(bank, out)
    assert set(runs.method) == {"source-only", "AdaBN", "AdaBN + check", "MCC (kit)", "MCC (kit) + check"}
    labs = bank_report.lab_means(runs)
    assert (labs[labs.method == "source-only"].gain == 0).all()
    text = bank_report.write_report(bank, out)
    assert "MCC (kit)" in text and (out / "bank.md").is_file()
    with pytest.raises(KitError, match="screening runs missing"):
        bank_report.freeze_choice(bank, out, tmp_path / "frozen.json")


def test_the_measured_records_say_where_they_came_from_and_the_kit_follows_the_frozen_choice():
    """Each committed record the package holds names the study command and the commit that wrote it; the kit's
    default trains as the frozen choice's recipe does (no adaptation term, no target in the batch) with its
    settings (AdaBN)."""
    import re
    from pathlib import Path

    from submission.config import make_config
    from submission.methods.registry import TERMS

    records = sorted((Path(__file__).parents[1] / "submission" / "measured").glob("*.json"))
    assert [p.name for p in records] == ["frozen_choice.json", "labels.json", "stress_choice.json", "trust.json"]
    for path in records:
        prov = json.loads(path.read_text())["provenance"]
        assert prov["command"].startswith("python -m studies.") and re.fullmatch(r"[0-9a-f]{7,40}", prov["commit"])
    f = json.loads(records[0].read_text())  # the lab bank's frozen choice (v1, 32 px): the adabn recipe
    adabn, chosen = make_config("adabn"), make_config(f["recipe"], **f["settings"])
    assert all(getattr(adabn, t.weight) == getattr(chosen, t.weight) == 0 for t in TERMS)
    assert (adabn.target_in_batch, adabn.colour_aug, adabn.target_norm) == (chosen.target_in_batch, chosen.colour_aug,
                                                                            chosen.target_norm)
    assert adabn.adapt == chosen.adapt == "adabn"
    s = json.loads(records[2].read_text())  # the stress study's choice (v1, 64 px, 600 steps): the kit's recipe
    kit, chosen = make_config("kit"), make_config(s["recipe"], **s["settings"])
    assert {k: v for k, v in dataclasses.asdict(kit).items() if k != "recipe"} == \
        {k: v for k, v in dataclasses.asdict(chosen).items() if k != "recipe"}


def test_skewed_labs_have_a_dominant_class_or_absent_ones_and_plain_labs_are_unchanged():
    import numpy as np

    from studies.lab_bank import draw_lab, draw_skewed, lab_spec
    from submission.demo.lab import _target_labels

    for seed in (2, 4, 6):  # even: one class holds 60-95%
        assert 0.6 <= max(draw_skewed(seed)[1]) <= 0.95
    for seed in (1, 3, 5):  # odd: 1 to 4 classes absent, never drawn
        prior = draw_skewed(seed)[1]
        assert 1 <= prior.count(0.0) <= 4
        drawn = _target_labels(240, np.random.default_rng(0), prior)
        assert not {i for i, p in enumerate(prior) if p == 0} & set(drawn)
    assert lab_spec("lab7")[:2] == draw_lab(7) and lab_spec("skew7")[2] != lab_spec("lab7")[2]
    # a plain lab's prior has every class: its labels are the same draw as before skewed labs existed
    prior = draw_lab(7)[1]
    rng = np.random.default_rng(1)
    base = [c for c in range(11) for _ in range(2)]
    labels = base + rng.choice(11, size=240 - 22, p=prior).tolist()
    rng.shuffle(labels)
    assert _target_labels(240, np.random.default_rng(1), prior) == labels


def test_stress_labs_draw_each_kind_and_write_wbc1_as_drawn(tmp_path):
    import dataclasses

    import pandas as pd

    from studies.lab_bank import STRESS, STRESS_KINDS, draw_stress, stress_kind, wbc1_spec
    from submission.demo.cells import Domain

    plain = Domain(1, (1, 1), (), (), 0, 0)
    for seed in range(20):
        domain, prior, wbc1 = draw_stress(seed)
        kind, p = stress_kind(seed), np.array(prior)
        assert kind == STRESS_KINDS[seed % 5] and p.sum() == pytest.approx(1.0)
        moved = [f for f in ("cell_scale", "nucleus_scale", "granule_density", "overlap", "smudge")
                 if getattr(domain, f) != getattr(plain, f)]
        assert (moved != []) == (kind == "morphology"), seed
        if kind == "label":
            assert STRESS["dominant"][0] <= p.max() <= STRESS["dominant"][1] and 1 <= (p == 0).sum() <= 3
        elif kind == "small":
            assert wbc1 == {"n": wbc1["n"]} and wbc1["n"] in STRESS["wbc1_sizes"]
        elif kind == "prior":
            assert 0.5 * np.abs(np.array(wbc1["prior"]) - p).sum() > 0.1  # WBC1 meets another prior than WBC2
        elif kind == "patient":
            assert 2 <= (p > 0).sum() <= 4
        else:
            assert all(STRESS[f][0] <= getattr(domain, f) <= STRESS[f][1] for f in moved)
        assert wbc1_spec(f"stress{seed}") == wbc1 and (wbc1 == {} or kind in ("small", "prior"))
    assert dataclasses.replace(plain) == plain and lab_spec("stress3")[2] != lab_spec("skew3")[2]
    assert parse_labs("stress1-2,3") == ["stress1", "stress2", "lab3"]
    # a small lab's WBC1 is its drawn size, its WBC2 the bank's; a patient lab draws only its classes
    small = next(s for s in range(5) if stress_kind(s) == "small")
    root = write_lab(tmp_path / "bank", f"stress{small}", scale=0.002, n_target=30, workers=1)
    assert len(list((root / "WBC1" / "DATA-VAL").glob("*.TIF"))) == draw_stress(small)[2]["n"]
    assert len(list((root / "WBC2" / "DATA-TEST").glob("*.TIF"))) == 30
    stamp = json.loads((tmp_path / "bank" / f"stress{small}" / "lab.json").read_text())
    assert stamp["kind"] == "small" and stamp["wbc1"]["n"] == draw_stress(small)[2]["n"]
    patient = next(s for s in range(5) if stress_kind(s) == "patient")
    write_lab(tmp_path / "bank", f"stress{patient}", scale=0.002, n_target=30, workers=1)
    seen = pd.read_csv(tmp_path / "bank" / f"stress{patient}" / "labels" / "WBC2.csv")["Label"]
    assert len(seen) == 30 and set(seen) <= {c for c, v in zip(CLASSES, draw_stress(patient)[1]) if v > 0}


def test_the_morphology_options_change_the_cell_and_default_to_no_change():
    import dataclasses

    from submission.demo.cells import DOMAINS, render_cell

    base = DOMAINS["WBC"]
    a = render_cell("eosinophil", base, np.random.default_rng(3))
    same = dataclasses.replace(base, cell_scale=1.0, nucleus_scale=1.0, granule_density=1.0, overlap=0.0, smudge=0.0)
    assert np.array_equal(a, render_cell("eosinophil", same, np.random.default_rng(3)))
    for change in ({"cell_scale": 1.25}, {"nucleus_scale": 0.85}, {"granule_density": 0.4}, {"overlap": 1.0},
                   {"smudge": 1.0}):
        b = render_cell("eosinophil", dataclasses.replace(base, **change), np.random.default_rng(3))
        assert b.shape == a.shape and np.abs(b.astype(int) - a).mean() > 1.0, change
