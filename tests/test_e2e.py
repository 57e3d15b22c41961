"""End to end on the tiny demo: two runs, TTA inference, ensemble, a CSV that passes --check."""

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
            "--seed", str(seed), "--data-root", str(demo / "data"), "--out", str(out), "--epochs", "1",
            "--iters-per-epoch", "2", "--image-size", "32", "--batch-size", "8", "--no-pretrained", "--workers", "0",
            "--device", "cpu", "--cache-dir", str(cache), "--min-pred-classes", "1"]))
    return out


def test_train_infer_ensemble_check(demo, two_runs, tmp_path):
    cache = ["--cache-dir", str(two_runs / "cache")]
    out = _ok(runner.invoke(infer.app, ["--runs", str(two_runs), "--tta", "--labels", str(demo / "labels"), *cache]))
    assert "macro F1" in out
    for seed in (0, 1):
        logits = pd.read_csv(two_runs / f"seed{seed}/logits_WBC2.csv")
        assert list(logits.columns[:2]) == ["Image", "basophil"] and len(logits) == 30
    sub = tmp_path / "submission.csv"
    out = _ok(runner.invoke(ensemble.app, ["--runs", str(two_runs), "--out", str(sub), "--labels", str(demo / "labels"),
                                           "--plot", str(tmp_path / "ensemble.png")]))
    assert "ensemble" in out and "agreement" in out and (tmp_path / "ensemble.png").stat().st_size > 10_000
    frame = pd.read_csv(sub)
    assert list(frame.columns) == ["Image", "Label", "LabelID"] and len(frame) == 30
    assert "is a valid submission" in _ok(runner.invoke(ensemble.app, ["--runs", str(two_runs), "--check", str(sub)]))

    # a broken file fails the check with one line, no traceback
    frame.iloc[:-1].to_csv(tmp_path / "short.csv", index=False)
    result = runner.invoke(ensemble.app, ["--runs", str(two_runs), "--check", str(tmp_path / "short.csv")])
    assert result.exit_code == 2 and "1 images of the split are missing" in result.output
    assert "Traceback" not in result.output


def test_single_run_writes_the_submission_and_wbc1_too(demo, two_runs, tmp_path):
    sub = tmp_path / "one.csv"
    _ok(runner.invoke(infer.app, [str(two_runs / "seed0"), "--no-tta", "--out", str(sub),
                                  "--cache-dir", str(two_runs / "cache")]))
    assert len(pd.read_csv(sub)) == 30
    _ok(runner.invoke(infer.app, [str(two_runs / "seed0"), "--split", "WBC1", "--out", str(tmp_path / "w1.csv"),
                                  "--cache-dir", str(two_runs / "cache")]))
    assert (two_runs / "seed0/logits_WBC1.csv").is_file()


def test_any_folder_of_images(demo, two_runs, tmp_path):
    _ok(runner.invoke(infer.app, [str(two_runs / "seed0"), "--images", str(demo / "data/WBC2/DATA-TEST"),
                                  "--out", str(tmp_path / "f.csv"), "--no-cache"]))
    assert len(pd.read_csv(tmp_path / "f.csv")) == 30


def test_user_errors_are_one_line(tmp_path):
    result = runner.invoke(infer.app, ["--runs", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "no runs with best.pt" in result.output and "Traceback" not in result.output
    result = runner.invoke(train.app, ["--data-root", str(tmp_path), "--out", str(tmp_path / "r"), "--no-pretrained",
                                       "--splits", str(tmp_path)])
    assert result.exit_code == 2 and "no split file" in result.output


def test_help_shows_the_defaults():
    out = _ok(runner.invoke(train.app, ["--help"]))
    assert "(default: 50)" in out and "--no-pretrained" in out and "--trade-off" in out


def test_error_messages_keep_brackets(tmp_path):
    from submission.errors import KitError, user_errors

    @user_errors
    def fail():
        raise KitError("columns ['a', 'b'] and [bold]x[/bold]")

    import typer

    app = typer.Typer()
    app.command()(fail)
    result = runner.invoke(app, [])
    assert result.exit_code == 2 and "['a', 'b'] and [bold]x[/bold]" in result.output
