"""End to end on the tiny demo: two runs, TTA inference, ensemble, a CSV that passes --check."""

import json
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

import ensemble
import infer
import train

runner = CliRunner()


def _ok(result):
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def two_runs(demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    cache = out / "cache"
    for seed in (0, 1):
        _ok(runner.invoke(train.app, [
            "--seed", str(seed), "--data-root", str(demo / "data"), "--runs", str(out), "--epochs", "1",
            "--iters-per-epoch", "2", "--image-size", "32", "--batch-size", "8", "--no-pretrained", "--workers", "0",
            "--device", "cpu", "--cache-dir", str(cache), "--min-pred-classes", "1", "--no-plots"]))
    return out


def test_train_infer_ensemble_check(demo, two_runs, tmp_path):
    cache = ["--cache-dir", str(two_runs / "cache")]
    out = _ok(runner.invoke(infer.app, ["--runs", str(two_runs), "--tta", "--truth", str(demo / "labels"), *cache]))
    assert "macro F1" in out
    for seed in (0, 1):
        logits = pd.read_csv(two_runs / f"seed{seed}/logits_WBC2_best_tta_own.csv")
        assert list(logits.columns[:2]) == ["Image", "basophil"] and len(logits) == 30
    sub = tmp_path / "submission.csv"
    out = _ok(runner.invoke(ensemble.app, ["--runs", str(two_runs), "--submission", str(sub), "--truth", str(demo / "labels"),
                                           "--plot", str(tmp_path / "ensemble.png")]))
    assert "ensemble" in out and "agreement" in out and (tmp_path / "ensemble.png").stat().st_size > 10_000
    frame = pd.read_csv(sub)
    assert list(frame.columns) == ["Image", "Label", "LabelID"] and len(frame) == 30
    assert "is a valid submission" in _ok(runner.invoke(ensemble.app, ["--runs", str(two_runs), "--check", str(sub)]))
    _demo_record_scores_what_was_written(demo, two_runs, sub, tmp_path)

    # a broken file fails the check with one line, no traceback
    frame.iloc[:-1].to_csv(tmp_path / "short.csv", index=False)
    result = runner.invoke(ensemble.app, ["--runs", str(two_runs), "--check", str(tmp_path / "short.csv")])
    assert result.exit_code == 1 and "1 images of the split are missing" in result.output
    assert "Traceback" not in result.output


def test_single_run_writes_the_submission_and_wbc1_too(demo, two_runs, tmp_path):
    sub = tmp_path / "one.csv"
    _ok(runner.invoke(infer.app, [str(two_runs / "seed0"), "--no-tta", "--submission", str(sub),
                                  "--cache-dir", str(two_runs / "cache")]))
    assert len(pd.read_csv(sub)) == 30
    _ok(runner.invoke(infer.app, [str(two_runs / "seed0"), "--split", "WBC1", "--submission", str(tmp_path / "w1.csv"),
                                  "--cache-dir", str(two_runs / "cache")]))
    assert (two_runs / "seed0/logits_WBC1_best_tta_own.csv").is_file()


def test_any_folder_of_images(demo, two_runs, tmp_path):
    folder = str(demo / "data/WBC2/DATA-TEST")
    out = _ok(runner.invoke(infer.app, [str(two_runs / "seed0"), "--images", folder, "--predictions", str(tmp_path / "f.csv"),
                                        "--no-cache"]))
    assert "assuming the run's WBC1 scale, 288 px = 25 um" in out.replace("\n", " ")
    pred = pd.read_csv(tmp_path / "f.csv")
    assert len(pred) == 30 and list(pred.columns[:3]) == ["Image", "Label", "LabelID"]
    assert list(pred.columns[-2:]) == ["entropy", "uncertain"] and "p_basophil" in pred
    assert ((pred.filter(like="p_").sum(1) - 1).abs() < 1e-6).all()
    out = _ok(runner.invoke(infer.app, [str(two_runs / "seed0"), "--images", folder, "--px-per-um", "10",
                                        "--predictions", str(tmp_path / "g.csv"), "--no-cache"]))
    assert "assuming" not in out
    meta = json.loads((two_runs / "seed0/logits_DATA-TEST_best_tta_own.json").read_text())
    assert meta["crop_px"] == 250 and meta["checkpoint"] == "best" and meta["tta"] is True


def test_user_errors_are_one_line(tmp_path):
    result = runner.invoke(infer.app, ["--runs", str(tmp_path / "nothing")])
    assert result.exit_code == 1 and "no runs with best.pt" in result.output and "Traceback" not in result.output
    result = runner.invoke(train.app, ["--data-root", str(tmp_path), "--runs", str(tmp_path / "r"), "--no-pretrained",
                                       "--splits", str(tmp_path)])
    assert result.exit_code == 1 and "no Acevedo_20 or Matek_19" in result.output and "--demo" in result.output
    for source in ("Acevedo_20", "Matek_19"):  # sources there, split files not: the next check speaks
        (tmp_path / source).mkdir()
    result = runner.invoke(train.app, ["--data-root", str(tmp_path), "--runs", str(tmp_path / "r"), "--no-pretrained",
                                       "--splits", str(tmp_path)])
    assert result.exit_code == 1 and "no split file" in result.output
    result = runner.invoke(train.app, ["--recipe", "fancy"])
    assert result.exit_code == 1 and "unknown recipe 'fancy'" in result.output


def test_help_shows_the_defaults():
    out = _ok(runner.invoke(train.app, ["--help"]))
    assert "--no-pretrained" in out and "--trade-off" in out and "--recipe" in out and "--lr-schedule" in out


def test_error_messages_keep_brackets(tmp_path):
    from submission.errors import KitError, user_errors

    @user_errors
    def fail():
        raise KitError("columns ['a', 'b'] and [bold]x[/bold]")

    import typer

    app = typer.Typer()
    app.command()(fail)
    result = runner.invoke(app, [])
    assert result.exit_code == 1 and "['a', 'b'] and [bold]x[/bold]" in result.output


def test_ensemble_refuses_to_mix_kinds_unless_asked(two_runs, tmp_path):
    cache = ["--cache-dir", str(two_runs / "cache")]
    _ok(runner.invoke(infer.app, [str(two_runs / "seed0"), "--no-tta", "--submission", str(tmp_path / "a.csv"), *cache]))
    _ok(runner.invoke(infer.app, [str(two_runs / "seed1"), "--checkpoint", "avg", "--submission", str(tmp_path / "b.csv"),
                                  *cache]))
    files = [str(two_runs / "seed0/logits_WBC2_best_notta_own.csv"), str(two_runs / "seed1/logits_WBC2_avg_tta_own.csv")]
    result = runner.invoke(ensemble.app, [*files, "--submission", str(tmp_path / "mixed.csv")])
    assert result.exit_code == 1 and "different kinds" in result.output and "--mix" in result.output
    assert not (tmp_path / "mixed.csv").exists()
    _ok(runner.invoke(ensemble.app, [*files, "--mix", "--submission", str(tmp_path / "mixed.csv")]))
    # a run folder lacking the kind asked for is named, not silently skipped
    out = _ok(runner.invoke(ensemble.app, ["--runs", str(two_runs), "--checkpoint", "avg", "--submission",
                                           str(tmp_path / "avg.csv")]))
    assert "seed0 has no logits_WBC2_avg_tta_own.csv" in out.replace("\n", " ")


BLOCK_HEAVY = """
import runpy, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'torchvision', 'cv2', 'albumentations'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
sys.argv = ['ensemble.py'] + sys.argv[1:]
runpy.run_path('ensemble.py', run_name='__main__')
"""


def test_ensemble_and_its_check_import_neither_torch_nor_opencv(two_runs, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    run = lambda *a: subprocess.run([sys.executable, "-c", BLOCK_HEAVY, *a], cwd=root, capture_output=True, text=True)  # noqa: E731
    assert run("--help").returncode == 0
    sub = tmp_path / "s.csv"
    _ok(runner.invoke(infer.app, [str(two_runs / "seed0"), "--submission", str(sub), "--cache-dir", str(two_runs / "cache")]))
    checked = run("--runs", str(two_runs), "--check", str(sub))
    assert checked.returncode == 0 and "is a valid submission" in checked.stdout, checked.stderr
    made = run("--runs", str(two_runs), "--submission", str(tmp_path / "e.csv"), "--report", str(tmp_path / "r.html"))
    assert made.returncode == 0 and (tmp_path / "r.html").is_file(), made.stderr


def test_predictions_carry_their_estimate_and_the_ensemble_its_report(demo, two_runs, tmp_path):
    from submission.scoring.trust import measured

    cache = ["--cache-dir", str(two_runs / "cache")]
    out = _ok(runner.invoke(infer.app, ["--runs", str(two_runs), *cache]))
    assert "members agree on" in out  # each run has the other beside it: their agreement, never in the estimate
    single, gate = measured()["single"], measured()["max_vanished"]

    def within_gate(rec) -> bool:  # at most max_vanished classes without a predicted cell, or no estimate is given
        gone = sum(n == 0 for n in rec["predicted_counts"].values())
        assert rec["available"] or gone <= gate or "have no predicted cell" in rec["why"]
        return gone <= gate

    for seed in (0, 1):
        meta = json.loads((two_runs / f"seed{seed}/logits_WBC2_best_tta_own.json").read_text())
        rec = meta["trust"]
        assert rec["use"] == "single" and rec["estimator"] == single["estimator"] and rec["agreement"] is not None
        assert rec["available"] == (single["beats_constant"] and within_gate(rec))
        if rec["available"]:
            assert rec["macro_f1_error"] == single["macro_f1_error_p90"] and len(rec["per_class_f1"]) == 11
            assert f"estimated macro F1 {rec['macro_f1']:.2f} ± {single['macro_f1_error_p90']:.2f}" in out
        val = pd.read_csv(two_runs / f"seed{seed}" / meta["source_val_logits"])
        assert list(val.columns[:3]) == ["Image", "label", "basophil"] and len(val) > 0
    sub = tmp_path / "submission.csv"
    out = _ok(runner.invoke(ensemble.app, ["--runs", str(two_runs), "--submission", str(sub), "--report",
                                           str(tmp_path / "report.html")]))
    assert "ensemble: estimated macro F1" in out and "lab report" in out
    rec = json.loads(sub.with_suffix(".json").read_text())["trust"]
    pair = measured()["ensemble"]["2"]  # the estimate measured for ensembles of two
    assert rec["use"] == "ensemble" and rec["estimator"] == pair["estimator"] and rec["members"] == 2
    assert rec["available"] == (pair["beats_constant"] and within_gate(rec)) and 0 <= rec["agreement"] <= 1
    if rec["available"]:
        assert rec["macro_f1_error"] == pair["macro_f1_error_p90"] and 0 <= rec["macro_f1"] <= 1
    assert sum(rec["predicted_counts"].values()) == 30
    page = (tmp_path / "report.html").read_text()
    assert page.count("<img ") > 0 and "Estimated macro F1" in page
    out = _ok(runner.invoke(infer.app, ["--runs", str(two_runs), "--no-estimate", *cache]))
    assert "estimated" not in out and not (two_runs / "seed0" / meta["source_val_logits"]).exists()
    out = _ok(runner.invoke(ensemble.app, ["--runs", str(two_runs), "--submission", str(sub)]))
    members_only = set(pair["terms"]) <= {"loo", "agreement", "classes"}  # no source fold needed
    assert ("ensemble: estimated macro F1: not given" in out) != (members_only and pair["beats_constant"]
                                                                  and within_gate(rec))
    from submission.scoring.trust import record

    alone = record(val.iloc[:, 2:].to_numpy(), list(val.columns[2:]), None, None, [], why_not="no fold")
    assert alone["use"] == "single" and not alone["available"] and alone["why"] == "no fold"


def test_every_setting_has_its_option_with_the_dataclass_default():
    """The options are generated from TrainConfig: each field has one, its shown default is the field's."""
    import dataclasses

    import typer.main

    from submission.cli import shown_default
    from submission.config import FIELDS, TrainConfig

    command = typer.main.get_command(train.app)
    options = {p.name: p for p in command.params if p.param_type_name == "option"}
    for name, f in FIELDS.items():
        assert name in options, name
        if name == "recipe":  # train.py's own option: it chooses the dict the others come from
            continue
        shown = shown_default(name)
        if shown is not None:
            default = getattr(TrainConfig(), name)
            first = shown.split(";")[0]
            if isinstance(default, bool):
                assert first == ("on" if default else "off"), name
            elif isinstance(default, (int, float, str)):
                assert first == str(default), name
            assert f"(default: {shown})" in options[name].help, name
    assert not dataclasses.fields(TrainConfig)[0].metadata["help"] == ""


def test_inference_does_not_import_the_training_loop():
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, infer, submission.predict.inference, submission.train.checkpoint, submission.progress, "
            "submission.scoring.plots, submission.data.targets, submission.predict.submit; "
            "print('submission.train.loop' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr


def test_do_no_harm_reference_checks_each_run_and_the_ensemble_follows(demo, two_runs, tmp_path):
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(two_runs, runs)
    cache = ["--cache-dir", str(runs / "cache")]
    _ok(runner.invoke(train.app, [
        "--recipe", "source-only", "--data-root", str(demo / "data"), "--runs", str(tmp_path / "ref"), "--epochs", "1",
        "--iters-per-epoch", "2", "--image-size", "32", "--batch-size", "8", "--no-pretrained", "--workers", "0",
        "--device", "cpu", *cache, "--min-pred-classes", "1"]))
    ref = tmp_path / "ref" / "seed0"
    refused = runner.invoke(infer.app, ["--runs", str(runs), "--reference", str(runs / "seed0"), *cache])
    assert refused.exit_code == 1 and "must be a source-only run" in refused.output and "Traceback" not in refused.output
    out = _ok(runner.invoke(infer.app, ["--runs", str(runs), "--reference", str(ref), *cache]))
    assert "do no harm" in out
    metas = [runs / f"seed{s}" / "logits_WBC2_best_tta_own.json" for s in (0, 1)]
    for meta in metas:
        check = json.loads(meta.read_text())["do_no_harm"]
        assert set(check) >= {"fires", "vanished", "flip_rate", "reference_logits", "class_check_fires"}
        assert check["reference_logits"] == str(ref / "logits_WBC2_best_tta_source.csv")
        assert check["decided_by"] == "estimate" and check["fires"] == (check["estimate"] < check["reference_estimate"])

    def fire(meta, fires=True):  # as infer.py records a check (the tiny runs are too short to mean anything)
        record = json.loads(meta.read_text())
        record["do_no_harm"]["fires"] = fires
        meta.write_text(json.dumps(record))

    sub = tmp_path / "submission.csv"
    fire(metas[0], False)
    fire(metas[1])
    out = _ok(runner.invoke(ensemble.app, ["--runs", str(runs), "--submission", str(sub), "--do-no-harm"]))
    assert "left out seed1" in out and "from 1 runs" in out
    fire(metas[0])
    out = _ok(runner.invoke(ensemble.app, ["--runs", str(runs), "--submission", str(sub), "--do-no-harm"]))
    assert "reference's prediction" in out
    reference = pd.read_csv(ref / "logits_WBC2_best_tta_source.csv").set_index("Image")
    expected = reference.to_numpy().argmax(1)
    got = pd.read_csv(sub).set_index("Image").loc[reference.index, "LabelID"].to_numpy()
    assert (got == expected).all()
    out = _ok(runner.invoke(ensemble.app, ["--runs", str(runs), "--submission", str(sub)]))  # off by default
    assert "from 2 runs" in out


def _demo_record_scores_what_was_written(demo, runs, sub, tmp_path):
    """demo.sh's run record: each treatment's per-seed and ensemble F1 are those of the files written, as sklearn
    scores them against the demo's labels (the ensemble: the seeds' mean logits); the submission's is its file's; the
    timings and the machine are recorded; a treatment without its files is one line."""
    from sklearn.metrics import f1_score

    from submission.demo.record import app as record_app

    (tmp_path / "timings.txt").write_text("generate 3\ntrain 10\ntotal 20\n")
    copy, dest = tmp_path / "runs", tmp_path / "record.json"  # the runs' files; "source" here is seed 1's own file
    for seed in (0, 1):
        (copy / f"seed{seed}").mkdir(parents=True)
        for f in [*(runs / f"seed{seed}").glob("logits_WBC2_best_tta_own.*"), runs / f"seed{seed}/config.json"]:
            shutil.copy(f, copy / f"seed{seed}" / f.name)
    args = ["--runs", str(copy), "--truth", str(demo / "labels"), "--submission", str(sub), "--dest", str(dest),
            "--treatments", "own,source"]
    failed = runner.invoke(record_app, args)
    assert failed.exit_code == 1 and "run infer.py --tta --adapt source" in failed.output
    for seed in (0, 1):
        shutil.copy(runs / "seed1/logits_WBC2_best_tta_own.csv", copy / f"seed{seed}/logits_WBC2_best_tta_source.csv")
    out = _ok(runner.invoke(record_app, [*args, "--timings", str(tmp_path / "timings.txt")]))
    assert "own (default)" in out and "submission.csv under" in out
    rec = json.loads(dest.read_text())
    truth = pd.read_csv(demo / "labels/WBC2.csv", dtype={"Image": str}).set_index("Image")["LabelID"]
    logits = {}
    for seed in (0, 1):
        z = pd.read_csv(runs / f"seed{seed}/logits_WBC2_best_tta_own.csv", dtype={"Image": str}).set_index("Image")
        logits[seed] = z.loc[truth.index].to_numpy()
        f1 = round(f1_score(truth, logits[seed].argmax(1), average="macro"), 4)
        assert rec["seeds"][f"seed{seed}"]["macro_f1"] == rec["treatments"]["own"]["seeds"][f"seed{seed}"] == f1
        assert rec["treatments"]["source"]["seeds"][f"seed{seed}"] == rec["seeds"]["seed1"]["macro_f1"]
    mean = (logits[0] + logits[1]) / 2
    assert rec["treatments"]["own"]["ensemble"] == round(f1_score(truth, mean.argmax(1), average="macro"), 4)
    ens = pd.read_csv(sub, dtype={"Image": str}).set_index("Image").loc[truth.index, "LabelID"]
    assert rec["submission"]["macro_f1"] == round(f1_score(truth, ens, average="macro"), 4)
    assert rec["seconds"] == {"generate": 3, "train": 10, "total": 20} and rec["machine"]["cores"] >= 1
    assert len(rec["submission"]["per_class_f1"]) == 11 and rec["labels"] is None and rec["default"] == "own"


def test_a_lab_asks_labels_checks_chooses_and_teaches(demo, two_runs, tmp_path):
    """The loop of a lab's few labels: the report asks, a simulated labeller answers, ensemble.py checks and chooses,
    train.py teaches from a run, and the cells that taught it never score it."""
    from submission.demo.labeller import app as labeller

    cache = ["--cache-dir", str(two_runs / "cache")]
    tiny = ["--epochs", "1", "--iters-per-epoch", "2", "--workers", "0", "--device", "cpu", *cache, "--no-plots"]
    _ok(runner.invoke(infer.app, ["--runs", str(two_runs), "--split", "WBC1", "--no-tta", *cache]))
    w1, report = tmp_path / "w1.csv", tmp_path / "report.html"
    out = _ok(runner.invoke(ensemble.app, ["--runs", str(two_runs), "--split", "WBC1", "--no-tta", "--submission", str(w1),
                                           "--report", str(report), "--ask", "22"]))
    assert "it asks for 22 cells" in out
    page = report.read_text()
    assert page.count('class="lab-cell"') == 22 and 'width="256"' in page and "Download labels.csv" in page
    labels = tmp_path / "labels.csv"
    _ok(runner.invoke(labeller, [str(tmp_path / "asked_WBC1.csv"), "--truth", str(demo / "labels"), "--out", str(labels)]))
    assert len(pd.read_csv(labels)) == 22
    out = _ok(runner.invoke(ensemble.app, ["--runs", str(two_runs), "--split", "WBC1", "--no-tta", "--submission", str(w1),
                                           "--labels", str(labels)]))
    assert "checked with 22 labels" in out
    check = json.loads(w1.with_suffix(".json").read_text())["check"]
    assert check["labels"] == 22 and len(check["labelled"]["interval"]) == 2 and "prediction_powered" in check

    # a bad file stops train.py before any run folder
    labels.with_name("bad.csv").write_text(labels.read_text().replace("WBC1,", "WBC2,"))
    result = runner.invoke(train.app, ["--labels", str(labels.with_name("bad.csv")), "--init", str(two_runs / "seed0"),
                                       "--runs", str(tmp_path / "bad"), *tiny])
    assert result.exit_code == 1 and "labels cells of 'WBC2'" in result.output and not (tmp_path / "bad").exists()

    taught = tmp_path / "taught"
    _ok(runner.invoke(train.app, ["--labels", str(labels), "--init", str(two_runs / "seed0"), "--runs", str(taught), *tiny]))
    roles = pd.read_csv(taught / "seed0/labels_taught.csv")
    assert set(roles["role"]) == {"taught", "held_out"} and len(roles) == 22
    config = json.loads((taught / "seed0/config.json").read_text())
    assert config["init"] == str(two_runs / "seed0") and config["iters_per_epoch"] == 2 and config["recipe"] == "kit"
    out = _ok(runner.invoke(infer.app, ["--runs", str(taught), "--split", "WBC1", "--no-tta", "--labels", str(labels),
                                        "--submission", str(tmp_path / "taught_w1.csv"), *cache]))
    held = int((roles["role"] == "held_out").sum())
    assert "taught the model and never score it" in out and f"checked with {held} labels" in out

    # choose: the kit's runs against a source-only run, by the labels
    _ok(runner.invoke(train.app, ["--recipe", "source-only", "--data-root", str(demo / "data"), "--runs", str(tmp_path / "so"),
                                  "--image-size", "32", "--batch-size", "8", "--no-pretrained", "--min-pred-classes", "1", *tiny]))
    _ok(runner.invoke(infer.app, ["--runs", str(tmp_path / "so"), "--split", "WBC1", "--no-tta",
                                  "--submission", str(tmp_path / "so_w1.csv"), *cache]))
    members = [str(two_runs / "seed0"), str(two_runs / "seed1"), str(tmp_path / "so/seed0")]
    out = _ok(runner.invoke(ensemble.app, [*members, "--split", "WBC1", "--no-tta", "--submission", str(w1), "--labels",
                                           str(labels), "--choose"]))
    assert "source-only:" in out and ("chose kit" in out or "chose source-only" in out)


def test_every_treatment_then_the_labels_choose_record_and_teach_under_it(demo, two_runs, tmp_path):
    """infer.py --adapt all on the labelled split and the test split, ensemble.py --labels: every treatment scored
    on the labelled cells, the choice said with why, its submission written and recorded; later predictions and
    teaching of the same lab use it, --adapt overrides it."""
    from submission.demo.labeller import app as labeller
    from submission.methods.adapt import NAMES

    runs = tmp_path / "runs"
    for seed in (0, 1):  # the runs' weights and settings (not their other files: the record is this test's own)
        (runs / f"seed{seed}").mkdir(parents=True)
        for f in ("best.pt", "config.json"):
            shutil.copy(two_runs / f"seed{seed}" / f, runs / f"seed{seed}" / f)
    cache = ["--cache-dir", str(two_runs / "cache")]
    for split in ("WBC1", "WBC2"):
        _ok(runner.invoke(infer.app, ["--runs", str(runs), "--split", split, "--no-tta", "--adapt", "all", *cache]))
    for name in NAMES:
        meta = json.loads((runs / f"seed0/logits_WBC2_best_notta_{name}.json").read_text())
        assert meta["treatment"] == name and meta["treatment_info"]["summary"]
    _ok(runner.invoke(ensemble.app, ["--runs", str(runs), "--split", "WBC1", "--no-tta", "--adapt", "own",
                                     "--submission", str(tmp_path / "w1.csv"), "--report", str(tmp_path / "r.html"),
                                     "--ask", "22"]))
    labels = tmp_path / "labels.csv"
    _ok(runner.invoke(labeller, [str(tmp_path / "asked_WBC1.csv"), "--truth", str(demo / "labels"), "--out", str(labels)]))
    sub = tmp_path / "submission.csv"
    out = _ok(runner.invoke(ensemble.app, ["--runs", str(runs), "--no-tta", "--labels", str(labels), "--submission",
                                           str(sub), "--report", str(tmp_path / "report.html"), "--ask", "0"]))
    flat = out.replace("\n", " ")
    assert "scored on 22 labelled cells of WBC1" in flat and all(f"  {n} " in out for n in NAMES)
    record = json.loads((runs / "adapt_choice.json").read_text())
    (lab, choice), = record.items()
    assert lab == str((demo / "data").resolve()) and choice["default"] == "own" and choice["why"] in flat
    assert f"chose {choice['chosen']}" in flat and len(choice["candidates"]) == len(NAMES)
    written = json.loads(sub.with_suffix(".json").read_text())
    assert written["treatment"] == choice["treatment"] and written["choice"]["why"] == choice["why"]
    assert all(m.endswith(f"_notta_{choice['treatment']}.csv") for m in written["members"])
    assert f"Predicted under <b>{choice['treatment']}</b>" in (tmp_path / "report.html").read_text()

    # later: infer.py and ensemble.py on this lab use the choice and say so; --adapt overrides it
    (runs / f"seed0/logits_WBC2_best_tta_{choice['treatment']}.csv").unlink(missing_ok=True)
    out = _ok(runner.invoke(infer.app, ["--runs", str(runs), "--tta", *cache]))
    assert "chosen by 22 of this lab's labels" in out.replace("\n", " ")
    assert (runs / f"seed0/logits_WBC2_best_tta_{choice['treatment']}.csv").is_file()
    later = tmp_path / "later.html"  # the report of a later ensemble says which treatment and why, labels not given
    _ok(runner.invoke(ensemble.app, ["--runs", str(runs), "--no-tta", "--submission", str(tmp_path / "later.csv"),
                                     "--report", str(later), "--ask", "0"]))
    assert f"Predicted under <b>{choice['treatment']}</b>" in later.read_text()
    assert "Chosen by 22 of the lab" in later.read_text()
    other = "source" if choice["treatment"] != "source" else "own"
    _ok(runner.invoke(infer.app, ["--runs", str(runs), "--tta", "--adapt", other, *cache]))
    assert (runs / f"seed0/logits_WBC2_best_tta_{other}.csv").is_file()

    # the same rule keeps the default with too few labels per class
    few = tmp_path / "few.csv"
    pd.read_csv(labels).head(5).to_csv(few, index=False)
    out = _ok(runner.invoke(ensemble.app, ["--runs", str(runs), "--no-tta", "--labels", str(few), "--submission",
                                           str(tmp_path / "few_sub.csv")]))
    assert "chose own: own kept: 5 labels are under 3 per labelled class" in out.replace("\n", " ")

    # teaching continues under the recorded choice, or under --adapt
    rec = json.loads((runs / "adapt_choice.json").read_text())
    rec[lab]["treatment"] = "adabn"
    (runs / "adapt_choice.json").write_text(json.dumps(rec))
    tiny = ["--epochs", "1", "--iters-per-epoch", "1", "--workers", "0", "--device", "cpu", *cache, "--no-plots"]
    out = _ok(runner.invoke(train.app, ["--labels", str(labels), "--init", str(runs / "seed0"), "--runs",
                                        str(tmp_path / "taught"), *tiny]))
    assert "teaching under --adapt adabn" in out.replace("\n", " ")
    taught = json.loads((tmp_path / "taught/seed0/config.json").read_text())
    assert taught["adapt"] == "adabn" and taught["target_norm"] == "own"
    _ok(runner.invoke(train.app, ["--labels", str(labels), "--init", str(runs / "seed0"), "--adapt", "source", "--runs",
                                  str(tmp_path / "taught2"), *tiny]))
    taught = json.loads((tmp_path / "taught2/seed0/config.json").read_text())
    assert taught["adapt"] == "source" and taught["target_norm"] == "source"
