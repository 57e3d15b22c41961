"""Bad inputs, interrupted runs, safe writes, numerical faults."""

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import infer
from submission.data.splits import scan_dataset
from submission.errors import KitError
from submission.train.checkpoint import load_checkpoint
from submission.train.loop import fit

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def demo_copy(demo, tmp_path):
    """A private copy of the tiny demo, under a path with spaces and non-ASCII characters."""
    dst = tmp_path / "Daten mit Leerzeichen é"
    shutil.copytree(demo, dst)
    return dst


def _acevedo(root: Path):
    return sorted((root / "data/Acevedo_20").rglob("*.jpg"))


def test_a_few_unreadable_source_images_are_skipped_with_one_warning(demo_copy, tmp_path, tiny, capsys):
    bad = _acevedo(demo_copy)[0]
    bad.write_bytes(b"")
    cfg = tiny(tmp_path / "runs", data_root=str(demo_copy / "data"), epochs=1, max_unreadable=0.05)
    fit(cfg)
    err = capsys.readouterr().err
    assert "skipping 1 unreadable images" in err and bad.name in err
    assert (tmp_path / "runs/seed0/unreadable_Acevedo_20.json").is_file()


def test_too_many_unreadable_source_images_stop_before_training(demo_copy, tmp_path, tiny):
    for f in _acevedo(demo_copy)[:5]:
        f.write_bytes(f.read_bytes()[:100])  # truncated JPEGs
    cfg = tiny(tmp_path / "runs", data_root=str(demo_copy / "data"), epochs=1, max_unreadable=0.01)
    with pytest.raises(KitError, match=r"Acevedo_20: 5 of \d+ images cannot be read .*over the 1% limit"):
        fit(cfg)
    assert (tmp_path / "runs/seed0/unreadable_Acevedo_20.json").is_file()
    assert not (tmp_path / "runs/seed0/last.pt").exists()


def test_unreadable_target_images_block_the_submission(demo_copy, tmp_path, tiny):
    fit(tiny(tmp_path / "runs", data_root=str(demo_copy / "data"), epochs=1))
    wbc2 = sorted((demo_copy / "data/WBC2/DATA-TEST").iterdir())
    wbc2[0].write_bytes(b"garbage")
    wbc2[1].write_bytes(b"")
    result = CliRunner().invoke(infer.app, [str(tmp_path / "runs/seed0"), "--submission", str(tmp_path / "s.csv"),
                                            "--no-cache"])
    assert result.exit_code == 1
    assert "2 target images cannot be read" in result.output
    assert wbc2[0].name in result.output and wbc2[1].name in result.output
    assert not (tmp_path / "s.csv").exists()


def test_same_file_name_in_two_class_folders_is_two_images(tmp_path):
    import cv2
    import numpy as np

    for c in ("monocyte", "basophil"):
        (tmp_path / "Matek_19" / c).mkdir(parents=True)
        cv2.imencode(".tiff", np.zeros((20, 20, 3), np.uint8))[1].tofile(tmp_path / "Matek_19" / c / "X_0001.tiff")
    frame = scan_dataset(tmp_path, "Matek_19")
    assert len(frame) == 2 and set(frame["label"]) == {"monocyte", "basophil"}


def test_nan_loss_stops_with_the_step_and_losses(tmp_path, tiny):
    cfg = tiny(tmp_path, lr=1e12, epochs=1, iters_per_epoch=6, log_every=1)
    with pytest.raises(KitError, match=r"loss is not finite at step \d+ \(epoch 0\): cls_loss .* mcc_loss .*--mcc-weight"):
        fit(cfg)


def _train_args(demo: Path, out: Path, epochs: int, *extra):
    return ["--data-root", str(demo / "data"), "--runs", str(out), "--epochs", str(epochs), "--iters-per-epoch", "3",
            "--image-size", "32", "--batch-size", "8", "--no-pretrained", "--workers", "0", "--device", "cpu",
            "--cache-dir", str(out / "cache"), "--grl-max-iters", "10", "--min-pred-classes", "1", *extra]


def test_ctrl_c_keeps_last_pt_and_resume_matches_an_uninterrupted_run(demo, tmp_path, monkeypatch, interrupt_at_evaluation):
    """Ctrl-C injected deterministically: KeyboardInterrupt at the 3rd epoch's evaluation."""
    import train

    runner = CliRunner()
    epochs = 4
    full = runner.invoke(train.app, _train_args(demo, tmp_path / "full", epochs))
    assert full.exit_code == 0, full.output
    interrupt_at_evaluation(3)
    cut = runner.invoke(train.app, _train_args(demo, tmp_path / "part", epochs))
    monkeypatch.undo()
    assert cut.exit_code == 130, cut.output
    assert "holds epoch 1; continue with --resume" in cut.output.replace("\n", " ") and "Traceback" not in cut.output
    last = tmp_path / "part/seed0/last.pt"
    assert load_checkpoint(last)["epoch"] == 1
    again = runner.invoke(train.app, _train_args(demo, tmp_path / "part", epochs))
    assert again.exit_code == 1 and "--resume" in again.output
    resumed = runner.invoke(train.app, _train_args(demo, tmp_path / "part", epochs, "--resume"))
    assert resumed.exit_code == 0, resumed.output
    a = pd.read_csv(tmp_path / "full/seed0/metrics.csv")
    b = pd.read_csv(tmp_path / "part/seed0/metrics.csv")
    pd.testing.assert_frame_equal(a, b)
    assert load_checkpoint(tmp_path / "full/seed0/best.pt")["epoch"] == load_checkpoint(tmp_path / "part/seed0/best.pt")["epoch"]


WRITER = """
import sys, torch
from submission.data.files import save_torch
path = sys.argv[1]
i = 0
while True:
    i += 1
    save_torch(path, {"i": i, "w": torch.full((4_000_000,), float(i))})
"""


@pytest.mark.parametrize("delay", [0.3, 0.7, 1.1])
def test_kill_9_while_saving_leaves_the_previous_good_file(tmp_path, delay):
    path = tmp_path / "ckpt.pt"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=ROOT)
    deadline = time.time() + 60
    while not path.exists() and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["w"].shape == (4_000_000,) and float(ckpt["w"][-1]) == ckpt["i"]
