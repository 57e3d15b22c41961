import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from submission.classes import CLASSES
from submission.errors import KitError
from submission.training import fit, load_checkpoint, make_config, model_from_checkpoint, selection_key, target_scores



def test_smoke_run_writes_the_run_folder(tiny, tmp_path):
    cfg = tiny(tmp_path)
    best = fit(cfg)
    run = tmp_path / "seed0"
    config = json.loads((run / "config.json").read_text())
    assert config["seed"] == 0 and config["image_size"] == 32 and config["iters_per_epoch_resolved"] == 3
    metrics = pd.read_csv(run / "metrics.csv")
    assert list(metrics["epoch"]) == [0, 1]
    for col in ("cls_loss", "transfer_loss", "source_val_f1", "target_snd", "target_entropy", "target_pred_classes",
                "target_guard_ok", "grl_coeff", "lr"):
        assert metrics[col].notna().all(), col
    ckpt = load_checkpoint(run / "best.pt")  # weights_only=True inside
    assert ckpt["classes"] == list(CLASSES) and ckpt["image_size"] == 32 and ckpt["epoch"] == best["epoch"]
    assert set(ckpt["normalization"]) == {"Acevedo_20", "Matek_19", "WBC1"}
    model = model_from_checkpoint(ckpt).eval()
    assert model.predict(torch.zeros(2, 3, 32, 32)).shape == (2, 11)
    assert sorted(p.name for p in (run / "target_logits").iterdir()) == ["epoch000.npy", "epoch001.npy"]
    assert (run / "last.pt").is_file()


def test_same_seed_same_metrics(tiny, tmp_path):
    fit(tiny(tmp_path / "a", seed=3))
    fit(tiny(tmp_path / "b", seed=3))
    assert (tmp_path / "a/seed3/metrics.csv").read_text() == (tmp_path / "b/seed3/metrics.csv").read_text()
    fit(tiny(tmp_path / "c", seed=4))
    assert (tmp_path / "c/seed4/metrics.csv").read_text() != (tmp_path / "a/seed3/metrics.csv").read_text()


@pytest.mark.parametrize("trade_off", [0.0, 1.0])
def test_trade_off_zero_trains_the_network_source_only(trade_off):
    """With trade-off 0 the step equals a plain cross-entropy step on everything but the adversarial head."""
    from submission.mdd import MDDNet
    from submission.training import train_step

    torch.manual_seed(0)
    a = MDDNet(11, 16, 16, dropout=0.0)
    b = MDDNet(11, 16, 16, dropout=0.0)
    b.load_state_dict(a.state_dict())
    opt_a = torch.optim.SGD(a.param_groups(0.1), lr=0.1, momentum=0.9, nesterov=True)
    opt_b = torch.optim.SGD(b.param_groups(0.1), lr=0.1, momentum=0.9, nesterov=True)
    x_s, x_t, y_s = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32), torch.randint(0, 11, (4,))
    train_step(a, x_s, y_s, x_t, opt_a, coeff=1.0, margin=4.0, trade_off=trade_off)
    b.train()
    y, _ = b(torch.cat([x_s, x_t]), 1.0)
    opt_b.zero_grad()
    torch.nn.functional.cross_entropy(y.chunk(2)[0], y_s).backward()
    opt_b.step()
    same = [torch.allclose(p, q, atol=1e-6) for n, p, q in zip(
        [n for n, _ in a.named_parameters()], a.parameters(), b.parameters()) if not n.startswith("adv_head")]
    assert all(same) == (trade_off == 0.0)


def test_a_run_folder_is_not_overwritten(tiny, tmp_path):
    cfg = tiny(tmp_path, epochs=1)
    fit(cfg)
    with pytest.raises(KitError, match="--resume.*--overwrite"):
        fit(cfg)
    fit(cfg, overwrite=True)


def test_resume_ends_like_an_uninterrupted_run(tiny, tmp_path):
    full = tiny(tmp_path / "full", epochs=3)
    fit(full)
    part = tiny(tmp_path / "part", epochs=1)
    fit(part)
    fit(dataclasses.replace(part, epochs=3), resume=True)
    a = (tmp_path / "full/seed0/metrics.csv").read_text()
    b = (tmp_path / "part/seed0/metrics.csv").read_text()
    assert a == b
    assert load_checkpoint(tmp_path / "full/seed0/best.pt")["epoch"] == load_checkpoint(tmp_path / "part/seed0/best.pt")["epoch"]


def test_resume_refuses_other_settings(tiny, tmp_path):
    cfg = tiny(tmp_path, epochs=1)
    fit(cfg)
    with pytest.raises(KitError, match="lr"):
        fit(dataclasses.replace(cfg, lr=0.1, epochs=2), resume=True)


def test_guard_keeps_collapsed_and_undecided_models_from_winning():
    rng = np.random.default_rng(0)
    good = rng.normal(size=(200, 11)) * 8  # confident, all classes
    collapsed = np.tile(good[:1], (200, 1))
    undecided = rng.normal(size=(200, 11)) * 0.01  # near-uniform softmax
    rows = {n: target_scores(l, 0.005, 6, 0.5) for n, l in (("good", good), ("collapsed", collapsed), ("undecided", undecided))}
    assert rows["collapsed"]["target_snd"] > rows["good"]["target_snd"]
    assert rows["undecided"]["target_snd"] > rows["good"]["target_snd"]
    assert rows["good"]["target_guard_ok"] == 1
    assert rows["collapsed"]["target_guard_ok"] == 0 and rows["undecided"]["target_guard_ok"] == 0
    assert max(rows.values(), key=selection_key) is rows["good"]


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": 1, "model": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(KitError, match="not a loadable kit checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")


def test_checkpoint_expectations_name_the_difference(tiny, tmp_path):
    fit(tiny(tmp_path, epochs=1))
    with pytest.raises(KitError, match="image_size is 32, expected 224"):
        load_checkpoint(tmp_path / "seed0/best.pt", expect={"image_size": 224})


def test_demo_switch_fills_only_what_is_not_given():
    cfg = make_config(True, epochs=3, seed=2)
    assert cfg.epochs == 3 and cfg.seed == 2 and cfg.image_size == 64 and cfg.pretrained is False
    full = make_config(False)
    assert full.image_size == 224 and full.pretrained and full.epochs == 50 and full.grl_max_iters == 1000


def test_channels_last_agrees_with_plain_fp32():
    """The kit's CPU speed switch changes the memory layout only: same losses and weights within float noise."""
    from submission.mdd import MDDNet
    from submission.training import to_device, train_step

    x_s, x_t, y = torch.randn(8, 3, 32, 32), torch.randn(8, 3, 32, 32), torch.randint(0, 11, (8,))
    runs = {}
    for channels_last in (False, True):
        torch.manual_seed(0)
        model = MDDNet(11, 64, 64)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.param_groups(0.01), lr=0.01, momentum=0.9, nesterov=True)
        losses = []
        for k in range(4):
            torch.manual_seed(100 + k)  # the same dropout masks on both sides
            out = train_step(model, to_device(x_s, "cpu", channels_last), y, to_device(x_t, "cpu", channels_last),
                             opt, 0.1, 4.0, 1.0)
            losses.append([float(out["cls_loss"]), float(out["transfer_loss"])])
        runs[channels_last] = (np.array(losses), [p.detach().clone() for p in model.parameters()])
    np.testing.assert_allclose(runs[True][0], runs[False][0], rtol=1e-4)
    for a, b in zip(runs[True][1], runs[False][1]):
        assert torch.allclose(a, b, atol=1e-4)
